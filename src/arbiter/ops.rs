//! The master's side of operations (issue 13): it holds the metrics listener and
//! supervises the process that serves it ([`crate::ops`]), and it sends statsd.
//!
//! - The master binds `--metrics-bind` at start, before anything forks, so a bad address
//!   stops the start with one line; it keeps its copy for the whole run, so scrapes and
//!   probes wait in the backlog while the metrics process restarts.
//! - The metrics process is forked after the table is mapped; one that dies is started
//!   again on the master's next tick (at most once a second). It is stopped last, after
//!   the workers and the front, so `/readyz` says 503 through the whole drain.
//! - On HUP a changed `metrics_bind` is bound anew (the old address stays if the new
//!   one cannot be bound) and the process restarted on it; statsd follows its settings.
//! - The master counts its error-log lines into its cells while anything counts (at
//!   start and after each HUP); its forked children name their own cells.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rgunicorn_metrics::{log_lines, Table};
use rgunicorn_process::privileges::{self, Account};
use rgunicorn_process::{exit, fds, parent, signals as roles, Forked, Signals};
use rgunicorn_workers::{log_error, log_info, log_warning};

use crate::config::{BindAddr, OpsSettings, Settings};
use crate::ops::statsd::Statsd;

/// The least time between two starts of the metrics process.
const RESTART_SPACING: Duration = Duration::from_secs(1);
/// How long a stopping metrics process gets before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The metrics listener, bound by the master.
pub enum MetricsListener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener, PathBuf),
}

impl MetricsListener {
    fn describe(&self) -> String {
        match self {
            MetricsListener::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("http://{addr}"),
                Err(_) => "http://?".into(),
            },
            MetricsListener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    fn try_clone(&self) -> io::Result<MetricsListener> {
        Ok(match self {
            MetricsListener::Tcp(l) => MetricsListener::Tcp(l.try_clone()?),
            MetricsListener::Unix(l, path) => MetricsListener::Unix(l.try_clone()?, path.clone()),
        })
    }
}

/// The served listener, and the process serving it.
struct Served {
    bind: BindAddr,
    listener: MetricsListener,
    child: Option<Pid>,
    next_start: Instant,
}

pub(super) struct Ops {
    table: Table,
    served: Option<Served>,
    statsd: Option<Statsd>,
    /// What `statsd` was made from, to tell whether a HUP changed it.
    statsd_from: (Option<crate::config::StatsdTarget>, String),
    stopping: bool,
}

impl Ops {
    /// Bind the metrics listener and connect statsd, as `settings` ask.
    pub(super) fn start(table: Table, settings: &OpsSettings) -> Result<Ops, String> {
        let served = match &settings.metrics_bind {
            Some(bind) => Some(Served::bind(bind)?),
            None => None,
        };
        let mut ops = Ops {
            table,
            served,
            statsd: None,
            statsd_from: (None, String::new()),
            stopping: false,
        };
        ops.count_log_lines(settings);
        ops.follow_statsd(settings);
        Ok(ops)
    }

    /// The master's error-log lines are counted while the counters are kept.
    fn count_log_lines(&self, settings: &OpsSettings) {
        log_lines::count_into(settings.counting().then(|| self.table.master_log()));
    }

    fn follow_statsd(&mut self, settings: &OpsSettings) {
        let wanted = (settings.statsd_host.clone(), settings.statsd_prefix.clone());
        if wanted == self.statsd_from {
            return;
        }
        self.statsd = match &wanted.0 {
            Some(target) => match Statsd::connect(target, &wanted.1, &self.table) {
                Ok(statsd) => {
                    log_info!("Sending statsd metrics to {target}");
                    Some(statsd)
                }
                Err(err) => {
                    log_error!("statsd: cannot use {target}: {err}; not sending");
                    None
                }
            },
            None => None,
        };
        self.statsd_from = wanted;
    }

    /// On every turn of the master's loop: restart the metrics process if it is due,
    /// send statsd if a second has passed.
    pub(super) fn tick(&mut self, signals: &mut Signals, settings: &Settings) {
        if let Some(statsd) = &mut self.statsd {
            statsd.tick(&self.table, false);
        }
        if self.stopping {
            return;
        }
        let table = self.table;
        if let Some(served) = &mut self.served {
            served.start_if_due(signals, table, settings);
        }
    }

    /// The child `pid` died: is it the metrics process? (Then it is started again.)
    pub(super) fn died(&mut self, pid: Pid) -> bool {
        match &mut self.served {
            Some(served) if served.child == Some(pid) => {
                served.child = None;
                if !self.stopping {
                    log_warning!("The metrics listener (pid:{pid}) exited: starting it again");
                }
                true
            }
            _ => false,
        }
    }

    /// HUP: follow the new settings.
    pub(super) fn reload(&mut self, settings: &OpsSettings) {
        self.count_log_lines(settings);
        self.follow_statsd(settings);
        let current = self.served.as_ref().map(|s| s.bind.clone());
        if current == settings.metrics_bind {
            return;
        }
        let next = match &settings.metrics_bind {
            Some(bind) => match Served::bind(bind) {
                Ok(served) => Some(served),
                Err(err) => {
                    log_error!("Reload: {err}; the metrics listener stays where it was");
                    return;
                }
            },
            None => None,
        };
        if let Some(old) = std::mem::replace(&mut self.served, next) {
            old.stop();
        }
    }

    /// The stop is over: stop the metrics process and send the last statsd counts.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        if let Some(served) = self.served.take() {
            served.stop();
        }
        if let Some(statsd) = &mut self.statsd {
            statsd.tick(&self.table, true);
        }
    }

    /// In a freshly forked worker: close the master's copies of the metrics socket and
    /// the statsd socket (without touching the socket file, which is the master's).
    pub(super) fn forget_in_child(&mut self) {
        self.served = None;
        self.statsd = None;
    }
}

impl Served {
    fn bind(bind: &BindAddr) -> Result<Served, String> {
        let listener = crate::ops::bind(bind)
            .map_err(|err| format!("cannot bind the metrics listener {bind}: {err}"))?;
        log_info!("Serving metrics at: {}/metrics", listener.describe());
        Ok(Served {
            bind: bind.clone(),
            listener,
            child: None,
            next_start: Instant::now(),
        })
    }

    fn start_if_due(&mut self, signals: &mut Signals, table: Table, settings: &Settings) {
        if self.child.is_some() || Instant::now() < self.next_start {
            return;
        }
        self.next_start = Instant::now() + RESTART_SPACING;
        let listener = match self.listener.try_clone() {
            Ok(l) => l,
            Err(err) => {
                log_error!("metrics listener: cannot duplicate its socket: {err}");
                return;
            }
        };
        let master = Pid::this();
        // SAFETY: the master is single-threaded, and the child leaves through
        // process::exit, never returning into the master's code.
        match unsafe { signals.fork(&roles::WORKER) } {
            Ok(Forked::Child) => std::process::exit(run_child(master, listener, table, settings)),
            Ok(Forked::Parent(pid)) => self.child = Some(pid),
            Err(err) => log_error!("cannot fork the metrics listener: {err}"),
        }
    }

    /// Stop the process and reap it: TERM, and SIGKILL if it is still there after
    /// [`STOP_WAIT`] (it holds nothing worth waiting longer for).
    fn stop(self) {
        if let Some(pid) = self.child {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_WAIT;
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(WaitStatus::StillAlive) => {
                        let _ = kill(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        break;
                    }
                    Err(Errno::EINTR) => {}
                    _ => break,
                }
            }
        }
        // The socket file is ours only while this master owns its socket files (not
        // after a USR2 started a new master, which has bound it again).
        let owner = crate::listeners::MASTER_PID.load(std::sync::atomic::Ordering::Relaxed);
        if let (MetricsListener::Unix(_, path), true) =
            (&self.listener, owner == std::process::id())
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// In the forked child: keep only the metrics socket, die with the master, take the
/// workers' user, serve.
fn run_child(master: Pid, listener: MetricsListener, table: Table, settings: &Settings) -> i32 {
    super::title::set("rgunicorn: metrics");
    // SAFETY: a fresh fork of the single-threaded master: the master's memory that owns
    // the other descriptors (listeners, signal sockets, log files) is never used or
    // dropped here, since this child leaves through process::exit.
    if let Err(err) = unsafe { fds::close_all_except(&crate::ops::keep_fds(&listener)) } {
        eprintln!("rgunicorn metrics: cannot close the master's descriptors: {err}");
    }
    let w = &settings.worker;
    if let Err(err) = rgunicorn_workers::log::init(&w.error_log, w.log_level) {
        eprintln!("rgunicorn metrics: cannot open the error log: {err}");
    }
    match parent::watch(master, Signal::SIGQUIT) {
        Ok(()) => {}
        Err(parent::ParentError::Gone(_)) => return exit::OK,
        Err(err) => log_error!("metrics listener: {err}"),
    }
    if let Err(err) = privileges::switch(&Account::from_ids(settings.uid, settings.gid)) {
        log_error!("metrics listener failed to boot: {err}");
        return exit::BOOT_ERROR;
    }
    let _ = parent::rearm();
    let mut signals = match Signals::install(&roles::WORKER) {
        Ok(s) => s,
        Err(err) => {
            log_error!("metrics listener: cannot install signal handlers: {err}");
            return exit::BOOT_ERROR;
        }
    };
    crate::ops::serve(listener, table, &mut signals)
}

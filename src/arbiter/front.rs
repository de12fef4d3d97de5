//! Supervising the TLS front (`crate::front`) when the config has a `[front]` table.
//!
//! - The master binds the front's sockets before forking (maybe as root, for 443 and 80)
//!   and holds its own copies for the whole run: while the front restarts, clients queue
//!   in the backlog instead of being refused.
//! - The forked front keeps only those sockets (every other descriptor the master holds
//!   is closed in it), is sent SIGQUIT by the kernel when the master dies, and checks its
//!   parent on every tick as well ([`rgunicorn_process::parent`]).
//! - A front that dies is started again at once; only one that keeps dying soon after
//!   each start (a crash loop) waits, 1 s doubling up to 30 s, and the wait starts over
//!   once a front has run for [`STABLE_AFTER`] ([`Restarts`]). A front that exits 3
//!   (cannot boot: bad certificate) halts the master instead.
//! - The master forwards HUP and USR1 to it, and on a stop closes its own copies of the
//!   sockets before it signals the front; [`super::Arbiter`]'s `stop` says in which
//!   order the front and the workers go.
//! - On USR2 the master hands its copies to the new master ([`Front::handover`]), which
//!   takes them instead of binding ([`Front::bind`]): both fronts accept from the same
//!   sockets until one master is stopped, and the other's front keeps them.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rgunicorn_process::{exit, fds, parent, signals as roles, Forked, Signals};

use super::upgrade::FrontFds;
use crate::config::{self, Command};
use crate::front::{self, FrontError, FrontListeners, FrontSettings};
use crate::listeners::{self, ListenError};
use rgunicorn_workers::{log_error, log_info, log_warning};

/// A front that ran this long was not crash-looping: its next crash restarts it at once.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// The first wait of a crash loop, doubled for every further crash.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Front {
    settings: FrontSettings,
    /// The master's copies; `None` once the master is stopping.
    listeners: Option<FrontListeners>,
    state: State,
    restarts: Restarts,
    /// The front's cells in the shared table, when the master counts (issue 13).
    metrics: Option<&'static rgunicorn_metrics::table::FrontCells>,
    /// Whether the app this program embeds runs on app threads; it wins over what the
    /// configuration's APP says, at start and on every reload.
    embedded_app_threads: Option<bool>,
}

/// Where the front is, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not running; start it at `due`.
    Waiting {
        due: Instant,
    },
    Running {
        pid: Pid,
        since: Instant,
    },
    /// Told to stop; its exit is expected and it is not started again.
    Stopping {
        pid: Pid,
    },
    Stopped,
}

/// Why the front's sockets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Bind(#[from] FrontError),
    /// A socket the old master handed over (USR2) is not a listening TCP socket.
    #[error("front: {0}")]
    Inherited(#[from] ListenError),
}

impl Front {
    /// Check the certificate and bind, taking the sockets an old master handed over
    /// (`inherited`, after USR2) where they serve the configured addresses.
    pub fn bind(mut settings: FrontSettings, inherited: &FrontFds) -> Result<Front, BindError> {
        let tls = inherited
            .tls
            .iter()
            .map(|fd| listeners::adopt_tcp_listener(*fd))
            .collect::<Result<Vec<_>, _>>()?;
        let redirect = inherited
            .redirect
            .map(listeners::adopt_tcp_listener)
            .transpose()?;
        let listeners =
            front::bind_inheriting(&settings, FrontListeners::inherited(tls, redirect))?;
        if listeners.event_loops() != settings.threads.max(1) {
            log_warning!(
                "front.threads = {} needs a full restart: the front keeps the {} socket(s) the old master handed over",
                settings.threads,
                listeners.event_loops()
            );
            settings.threads = listeners.event_loops();
        }
        if let Some(addr) = listeners.tls_addr() {
            log_info!("Front listening at: https://{addr}");
        }
        if let Some(addr) = listeners.redirect_addr() {
            log_info!("Front redirecting at: http://{addr}");
        }
        Ok(Front {
            settings,
            listeners: Some(listeners),
            state: State::Waiting {
                due: Instant::now(),
            },
            restarts: Restarts::default(),
            metrics: None,
            embedded_app_threads: None,
        })
    }

    /// Close the sockets an old master handed over when the new config has no front:
    /// kept open, they would accept connections nobody serves once the old one is gone.
    pub fn close_inherited(inherited: &FrontFds) {
        for fd in inherited.tls.iter().chain(inherited.redirect.iter()) {
            match listeners::adopt_tcp_listener(*fd) {
                Ok(socket) => drop(socket),
                Err(err) => log_warning!("{err}"),
            }
        }
    }

    /// The master's copies of the sockets, for a new master (USR2); none once stopping.
    pub fn handover(&self) -> FrontFds {
        self.listeners
            .as_ref()
            .map(|l| FrontFds {
                tls: l.tls_fds(),
                redirect: l.redirect_fd(),
            })
            .unwrap_or_default()
    }

    /// The running front's pid.
    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid } => Some(pid),
            State::Waiting { .. } | State::Stopped => None,
        }
    }

    /// Fork the front if it is not running and its start is due. `args` are the master's:
    /// on HUP the front loads the configuration from them as the master does, so what
    /// the master derives for it (which answers it logs, whether the workers run app
    /// threads) follows a changed config too.
    pub fn start_if_due(&mut self, signals: &mut Signals, args: &[OsString]) {
        let State::Waiting { due } = self.state else {
            return;
        };
        if Instant::now() < due || self.listeners.is_none() {
            return;
        }
        let master = Pid::this();
        // SAFETY: the master is single-threaded, and the child leaves through
        // process::exit, never returning into the master's code.
        match unsafe { signals.fork(&roles::FRONT) } {
            Ok(Forked::Child) => std::process::exit(self.run_in_child(master, args)),
            Ok(Forked::Parent(pid)) => {
                log_info!("Booting front with pid: {pid}");
                self.state = State::Running {
                    pid,
                    since: Instant::now(),
                };
            }
            Err(err) => {
                let wait = self.restarts.after_death(Duration::ZERO).max(FIRST_BACKOFF);
                log_error!(
                    "Cannot fork the front: {err}; trying again in {} s",
                    wait.as_secs()
                );
                self.state = State::Waiting {
                    due: Instant::now() + wait,
                };
            }
        }
    }

    /// In the forked child: keep only the front's sockets, die with the master, serve.
    fn run_in_child(&mut self, master: Pid, args: &[OsString]) -> i32 {
        super::title::set("rgunicorn: front");
        // Its log lines are the front's, not the master's.
        rgunicorn_metrics::log_lines::count_into(self.metrics.map(|cells| cells.log()));
        let Some(listeners) = self.listeners.take() else {
            return exit::BOOT_ERROR;
        };
        // The master's error log is its own; the front writes to its own logs, and
        // until they are open, to stderr. Switching drops the file cleanly before the
        // descriptors go.
        let _ = rgunicorn_workers::log::init(
            &rgunicorn_workers::config::LogTarget::Stderr,
            rgunicorn_workers::config::LogLevel::Info,
        );
        // SAFETY: a fresh fork of the single-threaded master: the master's memory that
        // owns the other descriptors (listeners, signal sockets, files) is never used
        // or dropped here, since this child leaves through process::exit.
        if let Err(err) = unsafe { fds::close_all_except(&listeners.raw_fds()) } {
            eprintln!("rgunicorn front: cannot close the master's descriptors: {err}");
        }
        match parent::watch(master, Signal::SIGQUIT) {
            Ok(()) => {}
            Err(parent::ParentError::Gone(_)) => return exit::OK,
            // Not fatal: the front's loop still checks its parent on every tick.
            Err(err) => eprintln!("rgunicorn front: {err}"),
        }
        if let Some(cells) = self.metrics {
            front::metrics::install(rgunicorn_metrics::FrontRecorder::new(cells));
        }
        let embedded = self.embedded_app_threads;
        let reload = move || match config::load(args, &|key| std::env::var(key).ok()) {
            Ok(Command::Run(s) | Command::CheckConfig(s) | Command::PrintConfig(s)) => s
                .front
                .map(|front| with_embedded_app(front, embedded))
                .ok_or_else(|| "the configuration no longer has a [front] table".to_string()),
            Err(err) => Err(err.to_string()),
        };
        let settings = with_embedded_app(self.settings.clone(), embedded);
        front::serve_with_reload(settings, listeners, &reload)
    }

    /// The workers run the app this program embeds, on app threads or not: the front's
    /// batches follow that rather than the configuration's APP.
    pub fn serve_embedded(&mut self, app_threads: bool) {
        self.embedded_app_threads = Some(app_threads);
    }

    /// Have the front count into `cells` (from its next start on).
    pub fn count_into(&mut self, cells: &'static rgunicorn_metrics::table::FrontCells) {
        self.metrics = Some(cells);
    }

    /// The front exited. Returns why the master must halt, if it must.
    pub fn died(&mut self, code: Option<i32>, sig: Option<Signal>) -> Option<String> {
        let (pid, since) = match self.state {
            State::Running { pid, since } => (pid, since),
            State::Stopping { .. } => {
                self.state = State::Stopped;
                return None;
            }
            State::Waiting { .. } | State::Stopped => return None,
        };
        if code == Some(front::EXIT_BOOT) {
            self.state = State::Stopped;
            return Some("The TLS front failed to boot.".to_string());
        }
        let how = match (code, sig) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(sig)) => format!("was killed by {sig}"),
            (None, None) => "ended".to_string(),
        };
        let ran = since.elapsed();
        let wait = self.restarts.after_death(ran);
        if wait.is_zero() {
            log_error!("Front (pid:{pid}) {how}: starting it again now");
        } else {
            log_error!(
                "Front (pid:{pid}) {how} {} s after it started, {} times in a row: starting it again in {} s",
                ran.as_secs(),
                self.restarts.streak,
                wait.as_secs()
            );
        }
        self.state = State::Waiting {
            due: Instant::now() + wait,
        };
        None
    }

    /// Close the master's copies of the front's sockets (so once the front has closed
    /// its own, new connections are refused), and send `sig` to a running front. Its
    /// exit is reaped like any child's; it is not started again.
    pub fn stop(&mut self, sig: Signal) {
        self.listeners = None;
        self.state = match self.state {
            State::Running { pid, .. } | State::Stopping { pid } => {
                let _ = kill(pid, sig);
                State::Stopping { pid }
            }
            State::Waiting { .. } | State::Stopped => State::Stopped,
        };
    }

    /// Whether it has not exited yet.
    pub fn is_alive(&self) -> bool {
        self.pid().is_some()
    }
}

/// When to start a front that died: at once, unless it keeps dying soon after each start.
#[derive(Debug, Default)]
struct Restarts {
    /// Deaths in a row, each within [`STABLE_AFTER`] of its start.
    streak: u32,
}

impl Restarts {
    /// The front died after running `ran`: how long to wait before the next start.
    fn after_death(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE_AFTER {
            self.streak = 0;
        }
        self.streak = self.streak.saturating_add(1);
        match self.streak {
            1 => Duration::ZERO,
            n => FIRST_BACKOFF
                .saturating_mul(1 << (n - 2).min(16))
                .min(MAX_BACKOFF),
        }
    }
}

/// `front` as the front serves it: with the mode of the app this program embeds, if it
/// embeds one, in place of what the configuration's APP says (at start and on reloads).
fn with_embedded_app(
    mut front: FrontSettings,
    embedded_app_threads: Option<bool>,
) -> FrontSettings {
    if let Some(app_threads) = embedded_app_threads {
        front.upstream_app_threads = app_threads;
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_single_crash_restarts_at_once() {
        let mut r = Restarts::default();
        assert_eq!(r.after_death(secs(3600)), Duration::ZERO);
        // Long after: still at once, every time.
        assert_eq!(r.after_death(STABLE_AFTER), Duration::ZERO);
        assert_eq!(r.after_death(secs(60)), Duration::ZERO);
    }

    #[test]
    fn a_crash_loop_backs_off_up_to_30_s() {
        let mut r = Restarts::default();
        let waits: Vec<u64> = (0..9).map(|_| r.after_death(secs(1)).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        // Many more: no overflow, still capped.
        for _ in 0..100 {
            assert_eq!(r.after_death(Duration::ZERO), MAX_BACKOFF);
        }
    }

    #[test]
    fn running_for_a_while_starts_the_count_over() {
        let mut r = Restarts::default();
        for _ in 0..5 {
            r.after_death(secs(1));
        }
        assert_eq!(r.after_death(STABLE_AFTER), Duration::ZERO);
        assert_eq!(r.after_death(secs(1)), secs(1));
    }
}

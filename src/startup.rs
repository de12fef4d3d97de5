//! What happens between validated settings and the master loop: the checks that need
//! the outside world (the APP loads, log files open and owned by the workers' user),
//! the environment (`--chdir`, `-e`), all before a socket is bound, so a bad start fails
//! fast with one line.
//!
//! The master never imports a Python app itself, except under `--preload`. To still report
//! a broken APP once, before any worker exists (and to refuse it on HUP while the old
//! workers keep serving), it imports the app in a short-lived child ([`trial_import`]).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use rgunicorn_workers::app::{self, AppSpec};
use rgunicorn_workers::config::LogTarget;
use rgunicorn_workers::App;

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    App(#[from] app::AppError),
    #[error("cannot open error log {path}: {source}")]
    ErrorLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot import the app in a child process: {0}")]
    Trial(std::io::Error),
    #[error("cannot change directory to {path} (chdir): {source}")]
    Chdir {
        path: String,
        source: std::io::Error,
    },
}

impl StartError {
    /// An APP that cannot load is gunicorn's APP_LOAD_ERROR (4); the rest are start errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::App(_) => rgunicorn_process::exit::APP_LOAD_ERROR,
            _ => 1,
        }
    }
}

/// `--check-config`, and HUP without `--preload`: the APP parses, fits this build and its
/// virtualenv, and (a Python app) imports, in a child process that exits at once.
pub fn check(settings: &Settings) -> Result<(), StartError> {
    let spec = AppSpec::parse(&settings.worker.app)?;
    spec.preflight()?;
    if spec.is_python() {
        trial_import(&spec, settings)?;
    }
    Ok(())
}

/// At start: [`check`] the APP, or under `--preload` import it here in the master, once,
/// before forking (the workers then share it copy-on-write). Returns the preloaded app.
pub fn load_app(settings: &Settings) -> Result<Option<Arc<dyn App>>, StartError> {
    if !settings.preload_app {
        return check(settings).map(|()| None);
    }
    let spec = AppSpec::parse(&settings.worker.app)?;
    spec.preflight()?;
    Ok(Some(spec.instantiate(&settings.worker.python)?))
}

/// Import a Python app in a forked child and report how it went: the child logs the
/// traceback, sends the one-line reason over a pipe and exits. An import that outlasts
/// `--timeout` is left to the workers (their own timeout applies) with a warning.
fn trial_import(spec: &AppSpec, settings: &Settings) -> Result<(), StartError> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| StartError::Trial(e.into()))?;
    // Every signal waits across the fork, so none runs the master's handler in the child
    // (which would report it to the master as its own).
    let mask = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| StartError::Trial(e.into()))?;
    // SAFETY: the master is single-threaded here (at start, or in its loop on HUP), so no
    // lock can be held by a thread that does not exist in the child; the child only
    // imports the app and leaves through process::exit.
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = mask.thread_set_mask();
    }
    match forked.map_err(|e| StartError::Trial(e.into()))? {
        ForkResult::Child => {
            drop(read_end);
            restore_default_signals();
            let _ = mask.thread_set_mask();
            // As the workers will see it (on HUP the master has not applied these yet).
            if let Some(dir) = &settings.chdir {
                let _ = std::env::set_current_dir(dir);
            }
            for (key, value) in &settings.raw_env {
                std::env::set_var(key, value);
            }
            let code = match spec.instantiate(&settings.worker.python) {
                Ok(_) => 0,
                Err(err) => {
                    let _ = nix::unistd::write(&write_end, err.to_string().as_bytes());
                    rgunicorn_process::exit::APP_LOAD_ERROR
                }
            };
            app::before_exit();
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            wait_for_trial(child, read_end, settings.worker.timeout)
        }
    }
}

fn wait_for_trial(child: Pid, read_end: OwnedFd, timeout: Duration) -> Result<(), StartError> {
    let started = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, _)) => {
                let mut why = String::new();
                let _ = std::fs::File::from(read_end).read_to_string(&mut why);
                return Err(StartError::App(if why.is_empty() {
                    app::AppError::Interpreter("the app could not be loaded".into())
                } else {
                    app::AppError::Interpreter(why)
                }));
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(StartError::App(app::AppError::Interpreter(format!(
                    "importing the app killed its process ({sig})"
                ))))
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(StartError::Trial(err.into())),
        }
        if !timeout.is_zero() && started.elapsed() >= timeout {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(child, None);
            rgunicorn_workers::log_warning!(
                "importing the app took longer than the timeout ({} s): starting the workers anyway",
                timeout.as_secs()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The trial child must not run the master's signal handlers (they report to the master).
fn restore_default_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        // SAFETY: SIG_DFL installs no Rust code as a handler.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// Set up the process for the master: chdir, raw_env, the error log. The caller then
/// verifies the app loads once, so a bad APP is reported once rather than by every worker.
pub fn prepare(settings: &Settings) -> Result<(), StartError> {
    if let Some(dir) = &settings.chdir {
        std::env::set_current_dir(dir).map_err(|source| StartError::Chdir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    for (key, value) in &settings.raw_env {
        // The master is still single-threaded: nothing reads the environment concurrently.
        std::env::set_var(key, value);
    }
    let worker = &settings.worker;
    rgunicorn_workers::log::init(&worker.error_log, worker.log_level).map_err(|source| {
        StartError::ErrorLog {
            path: target_name(&worker.error_log),
            source,
        }
    })?;
    open_log_files(settings)
}

/// Create the access log file if needed, then give both log files to `--user`/`--group`
/// (gunicorn chowns them too): workers open the access log and reopen both on USR1
/// after they dropped privileges, and must not fail there (a worker that cannot open
/// its access log exits 3 and halts the master). The master calls this at start, on
/// HUP and on USR1 before it signals the workers, so a file logrotate moved away is
/// created here, owned right, rather than in a worker that may not be allowed to.
pub fn open_log_files(settings: &Settings) -> Result<(), StartError> {
    let worker = &settings.worker;
    if let Some(LogTarget::File(path)) = &worker.access_log {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StartError::AccessLog {
                path: path.display().to_string(),
                source,
            })?;
    }
    if settings.uid.is_none() && settings.gid.is_none() {
        return Ok(());
    }
    for target in [Some(&worker.error_log), worker.access_log.as_ref()] {
        if let Some(LogTarget::File(path)) = target {
            if let Err(err) = std::os::unix::fs::chown(path, settings.uid, settings.gid) {
                // Not fatal here: a worker that then cannot open it says so and exits 3.
                rgunicorn_workers::log_warning!(
                    "cannot give {} to the workers' user (chown): {err}",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn target_name(target: &LogTarget) -> String {
    match target {
        LogTarget::Stdout => "-".into(),
        LogTarget::Stderr => "-".into(),
        LogTarget::File(p) => p.display().to_string(),
    }
}

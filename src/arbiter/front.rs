//! Supervising the TLS front (`crate::front`) when the config has a `[front]` table: the
//! master binds its sockets before forking (maybe as root, for 443 and 80), forks it
//! once, restarts it with a bounded backoff if it dies, sends it HUP and USR1 as it does
//! the workers, and stops it after the workers. The front's own code is `crate::front`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::SignalQueue;
use crate::front::{self, FrontError, FrontListeners, FrontSettings};
use rgunicorn_workers::{log_error, log_info};

/// Longest wait before restarting a front that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Front {
    settings: FrontSettings,
    listeners: Option<FrontListeners>,
    pid: Option<Pid>,
    /// When to start it again after it died.
    restart_at: Option<Instant>,
    backoff: Duration,
}

impl Front {
    pub fn bind(settings: FrontSettings) -> Result<Front, FrontError> {
        let listeners = front::bind(&settings)?;
        if let Some(addr) = listeners.tls_addr() {
            log_info!("Front listening at: https://{addr}");
        }
        if let Some(addr) = listeners.redirect_addr() {
            log_info!("Front redirecting at: http://{addr}");
        }
        Ok(Front {
            settings,
            listeners: Some(listeners),
            pid: None,
            restart_at: None,
            backoff: Duration::from_secs(1),
        })
    }

    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// Fork the front. `config_file` is re-read on the front's HUP for its new settings.
    pub fn spawn(&mut self, signals: &SignalQueue, config_file: Option<PathBuf>) {
        self.restart_at = None;
        // SAFETY: the master is single-threaded, and the child leaves through
        // process::exit, never returning into the master's code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                signals.forget_in_child();
                super::title::set("rgunicorn: front");
                let code = match self.listeners.take() {
                    Some(listeners) => {
                        let first = self.settings.clone();
                        let reload = move || match &config_file {
                            Some(path) => front::settings_from_file(path),
                            None => Ok(first.clone()),
                        };
                        front::serve_with_reload(self.settings.clone(), listeners, &reload)
                    }
                    None => front::EXIT_BOOT,
                };
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                log_info!("Booting front with pid: {child}");
                self.pid = Some(child);
            }
            Err(err) => {
                log_error!("cannot fork the front: {err}");
                self.schedule_restart();
            }
        }
    }

    pub fn respawn_if_due(&mut self, signals: &SignalQueue, config_file: Option<PathBuf>) {
        if self.pid.is_none() && self.restart_at.is_some_and(|t| Instant::now() >= t) {
            self.spawn(signals, config_file);
        }
    }

    /// The front exited. Returns why the master must halt, if it must.
    pub fn died(&mut self, code: Option<i32>, sig: Option<Signal>) -> Option<String> {
        let pid = self.pid.take();
        match (code, sig) {
            (Some(front::EXIT_BOOT), _) => {
                return Some("The TLS front failed to boot.".to_string());
            }
            (Some(code), _) => log_error!("Front (pid:{pid:?}) exited with code {code}"),
            (_, Some(sig)) => log_error!("Front (pid:{pid:?}) was sent {sig}!"),
            (None, None) => {}
        }
        self.schedule_restart();
        None
    }

    fn schedule_restart(&mut self) {
        log_info!("Restarting the front in {}s", self.backoff.as_secs());
        self.restart_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Stop the front (after the workers): `sig`, up to `wait`, then SIGKILL.
    pub fn stop(&mut self, sig: Signal, wait: Duration) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let _ = kill(pid, sig);
        let deadline = Instant::now() + wait;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    return;
                }
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// In a forked worker: close the front's sockets, which are none of its business.
    pub fn close_in_worker(self) {
        drop(self.listeners);
    }
}

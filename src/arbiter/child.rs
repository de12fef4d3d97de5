//! What a freshly forked child does before it becomes a worker, and on its way out:
//! close the master's copies of the listening sockets and the front's sockets (a socket
//! the master closes, or a worker stops accepting on, must not stay open here), ask to
//! die with the master, run `post_fork`, drop privileges, take its title, instantiate the
//! app (importing a Python app happens here, after the fork) and wrap it when there are
//! hooks, run the worker's event loop (`rgunicorn_workers::worker`), run `worker_exit`, let
//! Python finish, and exit. It never returns into the master's code. The fork itself (which already dropped the master's signal handlers),
//! and the master's side, are in [`super`].

use std::sync::Arc;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rgunicorn_process::privileges::{self, Account};
use rgunicorn_process::{exit, parent};
use rgunicorn_workers::app::{self, AppError, AppSpec};
use rgunicorn_workers::config::WorkerConfig;
use rgunicorn_workers::worker::{self, Retire, WorkerHooks};
use rgunicorn_workers::{log_error, App, Listener};

use super::heartbeat::{Beat, Slot};
use super::{title, Arbiter};
use crate::hooks::{HookedApp, Hooks, ServerInfo, WorkerInfo};

impl Arbiter {
    /// In the child, right after the fork by `master`: become worker number `age`, then
    /// exit.
    pub(super) fn become_worker(
        &mut self,
        master: Pid,
        listeners: Vec<Listener>,
        cfg: WorkerConfig,
        heartbeat: &Slot,
        age: u64,
    ) -> ! {
        // Its own log lines go to its slot, not to the master's cells.
        rgunicorn_metrics::log_lines::count_into(cfg.metrics.map(|r| r.log_cells()));
        // Only the master unlinks unix socket files: dropping these here just closes.
        self.listeners.clear();
        drop(self.front.take());
        self.ops.forget_in_child();
        // SIGQUIT: a worker whose master is gone stops at once (nobody can replace it).
        match parent::watch(master, Signal::SIGQUIT) {
            Ok(()) => {}
            Err(parent::ParentError::Gone(_)) => std::process::exit(exit::OK),
            // Not fatal: the worker's loop also checks its parent on every tick.
            Err(err) => log_error!("{err}"),
        }
        let me = WorkerInfo {
            pid: std::process::id(),
            age,
        };
        if let Some(hooks) = &self.hooks {
            let server = ServerInfo {
                // The master's pid, not this child's.
                pid: std::os::unix::process::parent_id(),
                ..self.server_info()
            };
            hooks.post_fork(&server, &me);
        }
        if let Err(err) =
            privileges::switch(&Account::from_ids(self.settings.uid, self.settings.gid))
        {
            log_error!("worker failed to boot: {err}");
            std::process::exit(exit::BOOT_ERROR);
        }
        title::set(&format!("rgunicorn: worker [{}]", cfg.proc_name));
        let app = match self.worker_app(&cfg, me) {
            Ok(app) => app,
            Err(err) => {
                log_error!("Exception in worker process: {err}");
                app::before_exit();
                std::process::exit(exit::APP_LOAD_ERROR);
            }
        };
        let mut beat = Beat {
            cells: self.table.worker(heartbeat.id()),
        };
        let code = match self.hooks.clone() {
            None => worker::run(listeners, cfg, app, &mut beat),
            Some(hooks) => {
                let mut side = WorkerSide {
                    inner: beat,
                    hooks: Arc::clone(&hooks),
                    worker: me,
                };
                let code = worker::run(listeners, cfg, app, &mut side);
                hooks.worker_exit(&me, code);
                code
            }
        };
        app::before_exit();
        std::process::exit(code)
    }

    /// The one place a worker gets its app: the embedded or preloaded one, else the APP
    /// instantiated here, after the fork (a Python app is imported now); wrapped in the
    /// request hooks when the program set hooks.
    fn worker_app(&self, cfg: &WorkerConfig, me: WorkerInfo) -> Result<Arc<dyn App>, AppError> {
        let inner = match self.app.clone() {
            Some(app) => app,
            None => AppSpec::parse(&cfg.app)?.instantiate(&cfg.python)?,
        };
        Ok(match &self.hooks {
            None => inner,
            Some(hooks) => Arc::new(HookedApp {
                inner,
                hooks: Arc::clone(hooks),
                worker: me,
            }),
        })
    }
}

/// The worker's hooks when the program set server hooks: the heartbeat as always, plus
/// `post_worker_init` and `worker_int`.
struct WorkerSide<H> {
    inner: H,
    hooks: Arc<dyn Hooks>,
    worker: WorkerInfo,
}

impl<H: WorkerHooks> WorkerHooks for WorkerSide<H> {
    fn heartbeat(&mut self) {
        self.inner.heartbeat();
    }

    fn retiring(&mut self, why: Retire) {
        self.inner.retiring(why);
    }

    fn post_worker_init(&mut self) {
        self.inner.post_worker_init();
        self.hooks.post_worker_init(&self.worker);
    }

    fn worker_int(&mut self) {
        self.inner.worker_int();
        self.hooks.worker_int(&self.worker);
    }
}

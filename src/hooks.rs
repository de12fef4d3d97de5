//! Server hooks for Rust programs that embed rgunicorn: gunicorn's `on_starting`,
//! `when_ready`, `pre_fork`, `post_fork`, `post_worker_init`, `worker_int`, `worker_exit`,
//! `child_exit`, `nworkers_changed`, `on_reload`, `pre_exec`, `on_exit`, `pre_request` and
//! `post_request`, as one trait whose methods all default to doing nothing.
//!
//! The master calls its hooks from its single-threaded loop ([`crate::arbiter`]); the
//! worker-side ones run in the worker process ([`WorkerSide`], driven by the event loop in
//! `rgunicorn_workers::worker`). `pre_request`/`post_request` run where the app runs, by
//! wrapping the app ([`HookedApp`]); without hooks the app is not wrapped at all, so the
//! inline fast path costs nothing more.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rgunicorn_workers::{App, Environ, Input, Mode, Response};

/// What the master tells its hooks about itself (gunicorn passes the arbiter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The master's pid.
    pub pid: u32,
    /// `--name` (`proc_name`).
    pub proc_name: String,
    /// The listening addresses, as logged (`http://127.0.0.1:8000`, `unix:/run/app.sock`).
    pub listeners: Vec<String>,
    /// How many workers the master keeps running now.
    pub num_workers: usize,
}

/// One worker (gunicorn passes the worker object): its pid and its age, a counter the
/// master increments for every worker it forks (the oldest has the smallest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: u32,
    pub age: u64,
}

/// gunicorn's server hooks. Every method does nothing unless overridden.
///
/// Hooks run on the server's own threads: keep them short and never block in
/// `pre_request`/`post_request` when the app is [`Mode::Inline`] (they then run on the
/// worker's event loop). A panic in a master-side hook is not caught: do not panic.
pub trait Hooks: Send + Sync + 'static {
    /// Master, before the listeners are bound.
    fn on_starting(&self, _server: &ServerInfo) {}
    /// Master, on `HUP`, before the new configuration is loaded.
    fn on_reload(&self, _server: &ServerInfo) {}
    /// Master, once the listeners are bound, before the first worker is forked.
    fn when_ready(&self, _server: &ServerInfo) {}
    /// Master, just before a worker is forked (it has no pid yet).
    fn pre_fork(&self, _server: &ServerInfo, _age: u64) {}
    /// Worker, right after the fork, before privileges are dropped and the app is loaded.
    fn post_fork(&self, _server: &ServerInfo, _worker: &WorkerInfo) {}
    /// Worker, once the app is loaded and the event loop is ready to accept.
    fn post_worker_init(&self, _worker: &WorkerInfo) {}
    /// Worker, when it is told to stop fast (`INT`/`QUIT`).
    fn worker_int(&self, _worker: &WorkerInfo) {}
    /// Worker, on its way out after serving (gunicorn: "just after a worker has been
    /// exited, in the worker process"); `code` is the exit code it is about to return.
    fn worker_exit(&self, _worker: &WorkerInfo, _code: i32) {}
    /// Master, after it reaped a worker.
    fn child_exit(&self, _server: &ServerInfo, _worker: &WorkerInfo) {}
    /// Master, when `TTIN`, `TTOU` or a reload changed the number of workers.
    fn nworkers_changed(&self, _server: &ServerInfo, _new: usize, _old: usize) {}
    /// Master, on `USR2`, just before the new master is started.
    fn pre_exec(&self, _server: &ServerInfo) {}
    /// Master, just before it exits.
    fn on_exit(&self, _server: &ServerInfo) {}
    /// Worker, before the app is called (on the thread that calls it).
    fn pre_request(&self, _worker: &WorkerInfo, _environ: &Environ) {}
    /// Worker, after the app answered `status` (500 when it panicked), before the body
    /// is sent.
    fn post_request(&self, _worker: &WorkerInfo, _environ: &Environ, _status: u16) {}
}

/// The app as a worker with request hooks runs it: pre_request, the app, post_request.
pub struct HookedApp {
    pub inner: Arc<dyn App>,
    pub hooks: Arc<dyn Hooks>,
    pub worker: WorkerInfo,
}

impl App for HookedApp {
    fn mode(&self) -> Mode {
        self.inner.mode()
    }

    fn run_thread(&self, serve: &mut dyn FnMut(&dyn rgunicorn_workers::app::Idle)) {
        self.inner.run_thread(serve)
    }

    fn call(&self, environ: &Environ, input: &mut Input) -> Response {
        self.hooks.pre_request(&self.worker, environ);
        // The worker turns a panic into a 500; post_request still sees it, as gunicorn's
        // does for an exception.
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(environ, input))) {
            Ok(response) => {
                self.hooks
                    .post_request(&self.worker, environ, response.status);
                response
            }
            Err(panic) => {
                self.hooks.post_request(&self.worker, environ, 500);
                resume_unwind(panic)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Hooks for Record {
        fn pre_request(&self, w: &WorkerInfo, env: &Environ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("pre {} {}", w.age, env.path_info));
        }
        fn post_request(&self, _w: &WorkerInfo, env: &Environ, status: u16) {
            self.0
                .lock()
                .unwrap()
                .push(format!("post {} {status}", env.path_info));
        }
    }

    struct Answer;
    impl App for Answer {
        fn mode(&self) -> Mode {
            Mode::Inline
        }
        fn call(&self, environ: &Environ, _input: &mut Input) -> Response {
            if environ.path_info == "/panic" {
                panic!("on purpose");
            }
            Response::new(204, Vec::new(), rgunicorn_workers::Body::Empty)
        }
    }

    #[test]
    fn request_hooks_wrap_the_app_and_see_panics_as_500() {
        let record = Arc::new(Record::default());
        let app = HookedApp {
            inner: Arc::new(Answer),
            hooks: Arc::clone(&record) as Arc<dyn Hooks>,
            worker: WorkerInfo { pid: 1, age: 7 },
        };
        assert_eq!(app.mode(), Mode::Inline);
        let mut env = Environ {
            path_info: "/ok".into(),
            ..Environ::default()
        };
        assert_eq!(app.call(&env, &mut Input::Empty).status, 204);
        env.path_info = "/panic".into();
        let panicked = catch_unwind(AssertUnwindSafe(|| app.call(&env, &mut Input::Empty)));
        assert!(panicked.is_err());
        assert_eq!(
            *record.0.lock().unwrap(),
            [
                "pre 7 /ok",
                "post /ok 204",
                "pre 7 /panic",
                "post /panic 500"
            ]
        );
    }
}

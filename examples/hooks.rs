//! A Rust program that embeds rgunicorn with gunicorn's server hooks. It serves the APP
//! named on the command line (the built-in welcome app by default) and writes one line
//! per hook call to the file named by `RGUNICORN_HOOKS_LOG` (stderr when unset):
//!
//!     RGUNICORN_HOOKS_LOG=/tmp/hooks.log cargo run --example hooks -- -w 2
//!     curl http://127.0.0.1:8000/api/v1/welcome/get_welcome_data
//!     kill -HUP <master pid>; kill -TERM <master pid>; cat /tmp/hooks.log
//!
//! `tests/hooks.rs` runs it and checks that every hook fires where it should.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use rgunicorn::{Environ, Hooks, ServerInfo, WorkerInfo};

/// Appends `<hook> key=value...` lines; every process (master and workers) appends to
/// the same file, one `write` per line, so lines never interleave (O_APPEND).
struct LogHooks {
    path: Option<std::path::PathBuf>,
}

impl LogHooks {
    fn line(&self, text: String) {
        let line = format!("{text}\n");
        let written = match &self.path {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes())),
            None => std::io::stderr().write_all(line.as_bytes()),
        };
        if let Err(err) = written {
            eprintln!("hooks example: cannot write {line:?}: {err}");
        }
    }
}

impl Hooks for LogHooks {
    fn on_starting(&self, s: &ServerInfo) {
        self.line(format!(
            "on_starting master={} workers={}",
            s.pid, s.num_workers
        ));
    }
    fn on_reload(&self, s: &ServerInfo) {
        self.line(format!("on_reload master={}", s.pid));
    }
    fn when_ready(&self, s: &ServerInfo) {
        self.line(format!(
            "when_ready master={} listeners={}",
            s.pid,
            s.listeners.join(",")
        ));
    }
    fn pre_fork(&self, s: &ServerInfo, age: u64) {
        self.line(format!("pre_fork master={} age={age}", s.pid));
    }
    fn post_fork(&self, s: &ServerInfo, w: &WorkerInfo) {
        self.line(format!(
            "post_fork master={} pid={} age={}",
            s.pid, w.pid, w.age
        ));
    }
    fn post_worker_init(&self, w: &WorkerInfo) {
        self.line(format!("post_worker_init pid={} age={}", w.pid, w.age));
    }
    fn worker_int(&self, w: &WorkerInfo) {
        self.line(format!("worker_int pid={}", w.pid));
    }
    fn worker_exit(&self, w: &WorkerInfo, code: i32) {
        self.line(format!("worker_exit pid={} code={code}", w.pid));
    }
    fn child_exit(&self, s: &ServerInfo, w: &WorkerInfo) {
        self.line(format!("child_exit master={} pid={}", s.pid, w.pid));
    }
    fn nworkers_changed(&self, _s: &ServerInfo, new: usize, old: usize) {
        self.line(format!("nworkers_changed new={new} old={old}"));
    }
    fn pre_exec(&self, s: &ServerInfo) {
        self.line(format!("pre_exec master={}", s.pid));
    }
    fn on_exit(&self, s: &ServerInfo) {
        self.line(format!("on_exit master={}", s.pid));
    }
    fn pre_request(&self, w: &WorkerInfo, environ: &Environ) {
        self.line(format!(
            "pre_request pid={} {} {}",
            w.pid, environ.method, environ.path_info
        ));
    }
    fn post_request(&self, w: &WorkerInfo, environ: &Environ, status: u16) {
        self.line(format!(
            "post_request pid={} {} {status}",
            w.pid, environ.path_info
        ));
    }
}

fn main() -> ExitCode {
    let hooks = LogHooks {
        path: std::env::var_os("RGUNICORN_HOOKS_LOG").map(Into::into),
    };
    let code = rgunicorn::main_with_hooks(None, Arc::new(hooks));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

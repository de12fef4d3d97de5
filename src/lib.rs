//! rgunicorn: the control plane. Configuration ([`config`]), the start-up checks
//! ([`startup`]), the master process ([`arbiter`]) with its listeners ([`listeners`]) and
//! pidfile ([`pidfile`]), and the TLS front ([`front`]). Everything that runs inside a
//! worker lives in the `rgunicorn-workers` crate.
//!
//! A Rust program embeds rgunicorn with its own app by calling [`main_with`]: it gets
//! the whole command line, config file, master and workers, serving that app. With
//! [`main_with_hooks`] it also gets gunicorn's server hooks ([`Hooks`]).

use std::sync::Arc;

pub mod arbiter;
pub mod config;
pub mod front;
pub mod hooks;
pub mod listeners;
pub mod ops;
pub mod pidfile;
pub mod startup;

pub use hooks::{Hooks, ServerInfo, WorkerInfo};
pub use rgunicorn_workers as workers;
pub use rgunicorn_workers::{App, Body, Environ, Input, Mode, Response};

use config::Command;

/// Run rgunicorn as its binary does, reading the process's arguments and environment.
/// With `app`, workers serve it instead of the APP argument. Returns the exit code.
pub fn main_with(app: Option<Arc<dyn App>>) -> i32 {
    run_main(app, None)
}

/// As [`main_with`], and call `hooks` at the points gunicorn calls its server hooks
/// (see [`Hooks`] for which process runs each). With `app` `None`, the APP argument
/// is served.
pub fn main_with_hooks(app: Option<Arc<dyn App>>, hooks: Arc<dyn Hooks>) -> i32 {
    run_main(app, Some(hooks))
}

fn run_main(app: Option<Arc<dyn App>>, hooks: Option<Arc<dyn Hooks>>) -> i32 {
    workers::app::keep_command_line();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = match config::load(&args, &|key| std::env::var(key).ok()) {
        Ok(command) => command,
        Err(err) => {
            err.print();
            return err.exit_code();
        }
    };
    let embedded = app.is_some();
    let check = |settings: &config::Settings| {
        if embedded {
            Ok(())
        } else {
            startup::check(settings)
        }
    };
    // The APP named on the command line is parsed and checked once here; only under
    // --preload is it imported in this process.
    let load = |settings: &config::Settings| {
        if embedded {
            Ok(None)
        } else {
            startup::load_app(settings)
        }
    };
    match command {
        Command::PrintConfig(settings) => {
            print!("{}", settings.to_toml());
            0
        }
        Command::CheckConfig(settings) => match check(&settings) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("rgunicorn: error: {err}");
                err.exit_code()
            }
        },
        Command::Run(settings) => {
            match startup::prepare(&settings).and_then(|()| load(&settings)) {
                Ok(preloaded) => {
                    let code = arbiter::run(settings, app.or(preloaded), hooks);
                    workers::app::before_exit();
                    code
                }
                Err(err) => {
                    eprintln!("rgunicorn: error: {err}");
                    err.exit_code()
                }
            }
        }
    }
}

//! `rgunicorn [OPTIONS] [APP]`: load and validate the settings, then hand them to the
//! master. Everything else lives in the library.

use std::process::ExitCode;

use rgunicorn::config::{self, Command};
use rgunicorn::{arbiter, startup};

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(run()).unwrap_or(1))
}

fn run() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = match config::load(&args, &|key| std::env::var(key).ok()) {
        Ok(command) => command,
        Err(err) => {
            err.print();
            return err.exit_code();
        }
    };
    match command {
        Command::PrintConfig(settings) => {
            print!("{}", settings.to_toml());
            0
        }
        Command::CheckConfig(settings) => match startup::check(&settings) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("rgunicorn: error: {err}");
                err.exit_code()
            }
        },
        Command::Run(settings) => match startup::prepare(&settings) {
            Ok(()) => arbiter::run(settings),
            Err(err) => {
                eprintln!("rgunicorn: error: {err}");
                err.exit_code()
            }
        },
    }
}

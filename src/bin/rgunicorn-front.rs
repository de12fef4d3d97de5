//! `rgunicorn-front -c conf/rgunicorn.toml`: the TLS front alone, for workers that run
//! elsewhere. Reads the `[front]` table of the config file and its `wsgi_app` (re-read on
//! HUP), binds, serves.
//!
//! It answers like `rgunicorn`: `-v` prints the version; a bad flag or configuration is
//! one line on stderr and exit 2; `--check-config` says nothing when all is well; a
//! certificate that cannot be served exits 3 (the front cannot boot).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{ArgAction, Parser};

/// rgunicorn's TLS front: terminates TLS, redirects http, proxies to the workers.
#[derive(Parser, Debug)]
#[command(name = "rgunicorn-front", version, disable_version_flag = true)]
struct Args {
    /// The config file whose [front] table configures the front.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "conf/rgunicorn.toml"
    )]
    config: PathBuf,
    /// Check the configuration and the certificates, then exit (silent when all is well).
    #[arg(long)]
    check_config: bool,
    /// Print the version (gunicorn's spelling: -v).
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: (),
}

/// A usage or configuration error (clap's and gunicorn's code).
const EXIT_USAGE: i32 = 2;

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(run()).unwrap_or(1))
}

fn run() -> i32 {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return usage(&err),
    };
    let settings = match rgunicorn::config::front_alone(&args.config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rgunicorn-front: error: {err}");
            return EXIT_USAGE;
        }
    };
    if args.check_config {
        return match rgunicorn::front::tls::load_all(&settings.certificates) {
            Ok(loaded) => {
                loaded
                    .warnings
                    .iter()
                    .for_each(|w| eprintln!("rgunicorn-front: warning: {w}"));
                0
            }
            Err(err) => {
                eprintln!("rgunicorn-front: error: front: {err}");
                rgunicorn::front::EXIT_BOOT
            }
        };
    }
    let listeners = match rgunicorn::front::bind(&settings) {
        Ok(listeners) => listeners,
        Err(err) => {
            eprintln!("rgunicorn-front: error: {err}");
            return rgunicorn::front::EXIT_BOOT;
        }
    };
    let path = args.config.clone();
    rgunicorn::front::serve_with_reload(settings, listeners, &move || {
        rgunicorn::config::front_alone(&path)
    })
}

/// `--help` and `-v` print and exit 0; anything else clap refuses is one line, exit 2.
fn usage(err: &clap::Error) -> i32 {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            0
        }
        _ => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("rgunicorn-front: error: {first} (see --help)");
            EXIT_USAGE
        }
    }
}

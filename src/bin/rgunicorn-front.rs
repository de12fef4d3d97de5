//! `rgunicorn-front -c conf/rgunicorn.toml`: the TLS front alone, for workers that run
//! elsewhere. Reads the `[front]` table of the config file (re-read on HUP), binds, serves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// rgunicorn's TLS front: terminates TLS, redirects http, proxies to the workers.
#[derive(Parser, Debug)]
#[command(name = "rgunicorn-front", version)]
struct Args {
    /// The config file whose [front] table configures the front.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "conf/rgunicorn.toml"
    )]
    config: PathBuf,
    /// Check the configuration and the certificate, then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    ExitCode::from(run(&args) as u8)
}

fn run(args: &Args) -> i32 {
    let settings = match rgunicorn::front::settings_from_file(&args.config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rgunicorn-front: {err}");
            return rgunicorn::front::EXIT_BOOT;
        }
    };
    if args.check_config {
        return match rgunicorn::front::tls::load(&settings.certfile, &settings.keyfile) {
            Ok(loaded) => {
                loaded
                    .warnings
                    .iter()
                    .for_each(|w| eprintln!("rgunicorn-front: warning: {w}"));
                println!(
                    "rgunicorn-front: configuration ok, certificate serial {}",
                    loaded.serial
                );
                0
            }
            Err(err) => {
                eprintln!("rgunicorn-front: front: {err}");
                rgunicorn::front::EXIT_BOOT
            }
        };
    }
    let listeners = match rgunicorn::front::bind(&settings) {
        Ok(listeners) => listeners,
        Err(err) => {
            eprintln!("rgunicorn-front: {err}");
            return rgunicorn::front::EXIT_BOOT;
        }
    };
    let path = args.config.clone();
    rgunicorn::front::serve_with_reload(settings, listeners, &move || {
        rgunicorn::front::settings_from_file(&path)
    })
}

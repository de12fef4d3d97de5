//! Settings: the command line, `RGUNICORN_CMD_ARGS`, the TOML config file and the
//! environment, merged and validated into [`Settings`]. The master calls [`load`] at start
//! and again on SIGHUP; it owns what happens next (binding, forking, printing).
//!
//! Precedence, lowest first: defaults (some from `WEB_CONCURRENCY`, `PORT`,
//! `FORWARDED_ALLOW_IPS`, as gunicorn), the config file (`-c`), `RGUNICORN_CMD_ARGS`, the
//! command line. Every value of every layer is validated, even one a later layer overrides,
//! so a bad config file is caught whatever the command line says. A list setting given by a
//! later layer (`-b`, `-e`) replaces the earlier list, as in gunicorn; it does not add to it.
//! Relative paths are kept as written: they are relative to the process's working
//! directory when used (the start directory), never to the config file; only `chdir` is
//! made absolute here, as gunicorn does.
//!
//! Neighbours: `spec.rs` lists the settings, `cli.rs` parses arguments, `file.rs` reads the
//! TOML file, `apply.rs` validates one value into [`Settings`], `print.rs` writes them back.
//! The `[front]` table belongs to [`crate::front::FrontSettings`].

use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;

use rgunicorn_workers::app::AppSpec;
use rgunicorn_workers::WorkerConfig;

use crate::front::FrontSettings;

mod apply;
mod cli;
mod file;
mod ops;
mod print;
mod spec;
#[cfg(test)]
mod tests;

pub use apply::Origin;
pub use ops::{OpsSettings, StatsdTarget};

/// One `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `HOST:PORT` or `[V6]:PORT`; the host is kept as given and resolved when binding.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`
    Unix(PathBuf),
    /// `fd://N`: an inherited, already listening socket.
    Fd(RawFd),
}

impl fmt::Display for BindAddr {
    /// The `--bind` spelling, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddr::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

/// `--worker-class`. Every name runs the same worker (a mio loop feeding a thread pool):
/// gunicorn's names are accepted so existing configs and scripts keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerClass {
    /// rgunicorn's own name for its worker.
    Mio,
    /// gunicorn's default; accepted for compatibility.
    Sync,
    /// gunicorn's threaded worker, our worker's ancestor; accepted for compatibility.
    Gthread,
}

impl WorkerClass {
    pub const NAMES: &'static str = "mio, sync, gthread";

    pub fn name(self) -> &'static str {
        match self {
            WorkerClass::Mio => "mio",
            WorkerClass::Sync => "sync",
            WorkerClass::Gthread => "gthread",
        }
    }
}

/// The umask unix sockets are created with when `--umask` is not given: 0660, so the
/// front (the master's user, or root) and the workers' group may connect and no one else
/// (gunicorn's umask of 0 makes them 0777: any local user could pose as the front).
pub const UNIX_SOCKET_UMASK: u32 = 0o117;

#[derive(Debug, Clone)]
pub struct Settings {
    pub binds: Vec<BindAddr>,
    pub workers: usize,
    pub backlog: i32,
    pub reuse_port: bool,
    /// `--umask`, when given. Without it unix sockets are created 0660
    /// ([`UNIX_SOCKET_UMASK`]), not 0777 as gunicorn's default umask of 0 makes them.
    pub umask: Option<u32>,
    pub pidfile: Option<PathBuf>,
    /// Absolute (resolved against the start directory, as gunicorn does).
    pub chdir: Option<PathBuf>,
    pub raw_env: Vec<(String, String)>,
    /// `--preload`: the master imports the Python app once before forking.
    pub preload_app: bool,
    pub max_requests_jitter: u64,
    pub config_file: Option<PathBuf>,
    /// Everything a worker needs (app, threads, timeouts, limits, logs).
    pub worker: WorkerConfig,
    /// The `[front]` table, when the master should start and supervise the TLS front.
    pub front: Option<FrontSettings>,
    /// The `[front]` table as written, kept so `--print-config` can write it back.
    pub front_table: Option<toml::Table>,
    /// `--worker-class`, as given (all run the same worker).
    pub worker_class: WorkerClass,
    /// `--user` and `--group` as given (name or number), for messages and `--print-config`.
    pub user: Option<String>,
    pub group: Option<String>,
    /// The ids they resolve to; `None` = do not switch.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Restart a worker whose resident memory passes this many bytes; 0 = off.
    pub max_worker_memory: u64,
    /// Consecutive worker boot failures (exit 3 or 4) retried, with a backoff, before
    /// the master halts; 0 = halt at the first (gunicorn's behaviour).
    pub boot_retries: u32,
    /// Metrics, health, statsd and the shutdown delay.
    pub ops: OpsSettings,
}

impl Default for Settings {
    /// gunicorn's defaults, without any environment variable applied.
    fn default() -> Self {
        let worker = WorkerConfig {
            forwarded_allow: apply::default_forwarded_allow(),
            ..WorkerConfig::default()
        };
        Settings {
            binds: vec![BindAddr::Tcp {
                host: "127.0.0.1".to_string(),
                port: 8000,
            }],
            workers: 1,
            backlog: 2048,
            reuse_port: false,
            umask: None,
            pidfile: None,
            chdir: None,
            raw_env: Vec::new(),
            preload_app: false,
            max_requests_jitter: 0,
            config_file: None,
            worker,
            front: None,
            front_table: None,
            worker_class: WorkerClass::Mio,
            user: None,
            group: None,
            uid: None,
            gid: None,
            max_worker_memory: 0,
            boot_retries: 0,
            ops: OpsSettings::default(),
        }
    }
}

impl Settings {
    /// The effective settings as a TOML config file that `-c` accepts again
    /// (`--print-config`). Unset optional settings are written as comments.
    pub fn to_toml(&self) -> String {
        print::to_toml(self)
    }
}

/// What the user asked the master to do.
#[derive(Debug)]
pub enum Command {
    Run(Settings),
    /// `--check-config`: everything validated; exit 0 without binding anything.
    CheckConfig(Settings),
    /// `--print-config`: print [`Settings::to_toml`] and exit 0.
    PrintConfig(Settings),
}

/// Why the settings could not be loaded. Display is one line, without the
/// `rgunicorn: error: ` prefix (see [`ConfigError::print`]), except for [`ConfigError::Clap`]
/// which is clap's `--help` / `--version` text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` or `--version`: not a failure; clap's text goes to stdout.
    #[error("{0}")]
    Clap(clap::Error),
    /// An argument clap rejected (unknown flag, missing value), condensed to one line.
    #[error("{origin}{message}")]
    Usage { origin: Origin, message: String },
    /// A value that is the wrong type or out of range. `what` names the flag and setting.
    #[error("{origin}invalid value {value} for {what}: expected {expected}")]
    InvalidValue {
        origin: Origin,
        what: String,
        value: String,
        expected: String,
    },
    #[error("{}: unknown setting {key:?}", path.display())]
    UnknownSetting { path: PathBuf, key: String },
    #[error("cannot read config file {path:?}: {reason}")]
    ReadConfig { path: PathBuf, reason: String },
    #[error("{}: {message}", path.display())]
    ParseConfig { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Front { path: PathBuf, message: String },
    #[error("RGUNICORN_CMD_ARGS: {0}")]
    CmdArgsSyntax(String),
    /// Two settings that cannot be used together.
    #[error("{0}")]
    Conflict(&'static str),
}

impl ConfigError {
    /// The process exit code: 0 after `--help`/`--version`, 2 (a usage error, as clap and
    /// gunicorn's argparse use) for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Clap(e) => e.exit_code(),
            _ => 2,
        }
    }

    /// Print the error as the `rgunicorn` binary should: `--help`/`--version` on stdout
    /// through clap (colours on a terminal), anything else as one line on stderr.
    pub fn print(&self) {
        match self {
            ConfigError::Clap(e) => {
                // Nothing useful to do if stdout is gone.
                let _ = e.print();
            }
            other => eprintln!("rgunicorn: error: {other}"),
        }
    }
}

/// The front alone (`rgunicorn-front -c FILE`, re-read on HUP): FILE's `[front]` table,
/// and, from FILE's `wsgi_app`, whether the workers started from the same file run their
/// app on app threads (it cannot know the APP of workers given one on their command line).
pub fn front_alone(path: &std::path::Path) -> Result<FrontSettings, String> {
    let table = crate::front::read_config_file(path)?;
    let mut settings = crate::front::settings_from_config(path, &table)?;
    if let Some(toml::Value::String(app)) = table.get("wsgi_app") {
        settings.upstream_app_threads = AppSpec::names_python(app);
    }
    Ok(settings)
}

/// Parse and validate everything. `args` includes argv[0]; `env` looks up environment
/// variables (the master passes `std::env::var`, tests a fake). Reads the config file and
/// resolves user and group names, nothing else: calling it again on SIGHUP is safe.
pub fn load(
    args: &[std::ffi::OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let cmdline = cli::parse(args, Origin::CommandLine)?;
    let from_env = match env("RGUNICORN_CMD_ARGS") {
        Some(text) => {
            let mut words = vec![std::ffi::OsString::from("rgunicorn")];
            words.extend(
                cli::shell_split(&text)
                    .map_err(ConfigError::CmdArgsSyntax)?
                    .into_iter()
                    .map(std::ffi::OsString::from),
            );
            cli::parse(&words, Origin::CmdArgs)?
        }
        None => cli::Parsed::default(),
    };

    let config_file = cmdline
        .config_file
        .clone()
        .or_else(|| from_env.config_file.clone());
    let check_config = cmdline.check_config || from_env.check_config;
    let print_config = cmdline.print_config || from_env.print_config;

    let mut layers: Vec<(Origin, Vec<(&'static spec::Spec, apply::Raw)>)> = Vec::new();
    let mut front_table = None;
    if let Some(path) = &config_file {
        let file = file::read(path)?;
        front_table = file.front;
        layers.push((Origin::File(file.path), file.values));
    }
    layers.push((Origin::CmdArgs, from_env.values));
    layers.push((Origin::CommandLine, cmdline.values));

    let mut settings = Settings {
        config_file: config_file.clone(),
        ..Settings::default()
    };
    // Environment defaults apply only where no layer sets the setting, and are validated
    // only then: a stray WEB_CONCURRENCY must not break `-w 4`.
    let is_set = |name: &str| {
        layers
            .iter()
            .any(|(_, values)| values.iter().any(|(s, _)| s.name == name))
    };
    apply::env_defaults(&mut settings, env, &is_set)?;
    for (origin, values) in &layers {
        for (spec, raw) in values {
            apply::apply(&mut settings, spec, raw, origin)?;
        }
    }

    // What a Python app's environ says about its server (gunicorn: wsgi.multiprocess is
    // workers > 1, wsgi.multithread is threads > 1).
    settings.worker.python.multiprocess = settings.workers > 1;
    settings.worker.python.multithread = settings.worker.threads > 1;
    if settings.preload_app && settings.worker.python.reload {
        return Err(ConfigError::Conflict(
            "--reload (reload) cannot work with --preload (preload_app): restarted workers would run the master's preloaded code; use one of them",
        ));
    }

    if let (Some(table), Some(path)) = (front_table, &config_file) {
        let mut front =
            FrontSettings::from_table(&table).map_err(|message| ConfigError::Front {
                path: path.clone(),
                message,
            })?;
        // The front may run as front.user: its forwarded headers are trusted too.
        if let Some(name) = &front.user {
            let uid = nix::unistd::User::from_name(name).ok().flatten();
            settings
                .worker
                .trusted_unix_uids
                .extend(uid.map(|u| u.uid.as_raw()));
        }
        // Each request is logged once: by the worker that answered it when the workers
        // keep an access log, by the front when it answered itself.
        if settings.worker.access_log.is_some() && !table.contains_key("access_log") {
            front.log_upstream_answers = false;
        }
        front.upstream_app_threads = AppSpec::names_python(&settings.worker.app);
        settings.front = Some(front);
        settings.front_table = Some(table);
    }

    Ok(if print_config {
        Command::PrintConfig(settings)
    } else if check_config {
        Command::CheckConfig(settings)
    } else {
        Command::Run(settings)
    })
}

//! Settings: the command line, `RGUNICORN_CMD_ARGS`, the TOML config file and the
//! environment, merged and validated into [`Settings`].
//!
//! IMPLEMENTATION IN PROGRESS (config helper): the types below are the agreed interface.

use std::os::fd::RawFd;
use std::path::PathBuf;

use rgunicorn_workers::WorkerConfig;

use crate::front::FrontSettings;

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

#[derive(Debug, Clone)]
pub struct Settings {
    pub binds: Vec<BindAddr>,
    pub workers: usize,
    pub backlog: i32,
    pub reuse_port: bool,
    pub umask: u32,
    pub pidfile: Option<PathBuf>,
    pub chdir: Option<PathBuf>,
    pub raw_env: Vec<(String, String)>,
    pub max_requests_jitter: u64,
    pub config_file: Option<PathBuf>,
    /// Everything a worker needs (app, threads, timeouts, limits, logs).
    pub worker: WorkerConfig,
    /// The `[front]` table, when the master should start and supervise the TLS front.
    pub front: Option<FrontSettings>,
}

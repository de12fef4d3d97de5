//! The narrow configuration a worker process runs with. The master validates the user's
//! settings (the `rgunicorn` crate's `config` module) and hands each worker one of these.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::Limits;

/// Where a log goes: `-` on the command line is the standard stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// Error-log verbosity, gunicorn's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// Which peers may set `X-Forwarded-*` (gunicorn's forwarded_allow_ips).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedAllow {
    /// `*`: every peer is trusted.
    All,
    /// Only these addresses (unix-socket peers: see `WorkerConfig::trusted_unix_uids`).
    Ips(Vec<IpAddr>),
}

impl ForwardedAllow {
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match (self, peer) {
            (_, None) => true,
            (ForwardedAllow::All, _) => true,
            (ForwardedAllow::Ips(ips), Some(ip)) => ips.contains(&ip),
        }
    }
}

/// What loading a Python app needs besides its name (gunicorn's `pythonpath`, `reload`),
/// and what its environ says about the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonConfig {
    /// Directories put on `sys.path` after the working directory (`--pythonpath`).
    pub pythonpath: Vec<PathBuf>,
    /// Restart the worker when a loaded module's file changes (`--reload`, development).
    pub reload: bool,
    /// `wsgi.multiprocess`: more than one worker serves the app.
    pub multiprocess: bool,
    /// `wsgi.multithread`: more than one app thread per worker.
    pub multithread: bool,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The APP argument: a built-in name or a Python `module:callable` (see `app::spec`).
    pub app: String,
    /// How a Python app is loaded and told about its server.
    pub python: PythonConfig,
    /// App threads for apps that may block (`--threads`).
    pub threads: usize,
    /// Most connections one worker holds at once (`--worker-connections`).
    pub worker_connections: usize,
    /// Idle time allowed between keep-alive requests (`--keep-alive`); zero disables keep-alive.
    pub keepalive: Duration,
    /// Heartbeat interval budget (`--timeout`); zero disables the heartbeat check.
    pub timeout: Duration,
    /// Longest time an app thread may spend on one request (`--request-timeout`); past it
    /// the client gets 504 and the worker retires. Zero = no limit.
    pub request_timeout: Duration,
    /// How long a stopping worker lets in-flight requests finish (`--graceful-timeout`).
    pub graceful_timeout: Duration,
    /// Requests after which the worker retires (already jittered by the master); 0 = never.
    pub max_requests: u64,
    /// Request-line, header-count and header-size limits.
    pub limits: Limits,
    /// Largest request body accepted (413 beyond); 0 = no limit.
    pub limit_request_body: u64,
    /// The whole request head must arrive within this time (408 after).
    pub header_timeout: Duration,
    /// A body must arrive at least this fast, in bytes per second, averaged (408 after).
    pub min_body_rate: u64,
    /// Bodies up to this size stay in memory; larger ones are spooled to a temp file.
    pub body_buffer_size: usize,
    pub access_log: Option<LogTarget>,
    pub access_log_format: String,
    pub error_log: LogTarget,
    pub log_level: LogLevel,
    pub forwarded_allow: ForwardedAllow,
    /// Unix-socket peers whose forwarded headers are trusted, by uid (SO_PEERCRED): root
    /// and the front's user. Anyone else who can reach the socket is an ordinary client.
    pub trusted_unix_uids: Vec<u32>,
    /// `Server` header value.
    pub server_software: String,
    /// proc_name, for the process title and logs.
    pub proc_name: String,
    /// This worker's slot in the shared counters, when metrics or statsd are on.
    pub metrics: Option<rgunicorn_metrics::Recorder>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            app: crate::app::DEFAULT_APP.to_string(),
            python: PythonConfig::default(),
            threads: 1,
            worker_connections: 1000,
            keepalive: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            request_timeout: Duration::ZERO,
            graceful_timeout: Duration::from_secs(30),
            max_requests: 0,
            limits: Limits::default(),
            limit_request_body: 0,
            header_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            body_buffer_size: 64 * 1024,
            access_log: None,
            access_log_format: DEFAULT_ACCESS_LOG_FORMAT.to_string(),
            error_log: LogTarget::Stderr,
            log_level: LogLevel::Info,
            forwarded_allow: ForwardedAllow::Ips(vec![IpAddr::from([127, 0, 0, 1])]),
            // Root and the server's own user: what the front runs as unless front.user
            // says otherwise (the master adds that one).
            trusted_unix_uids: vec![0, nix::unistd::geteuid().as_raw()],
            server_software: SERVER_SOFTWARE.to_string(),
            proc_name: "rgunicorn".to_string(),
            metrics: None,
        }
    }
}

/// gunicorn's default access_log_format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The `Server` header: gunicorn sends its name and version.
pub const SERVER_SOFTWARE: &str = concat!("rgunicorn/", env!("CARGO_PKG_VERSION"));

//! The table of settings: each one's gunicorn name (also its TOML key), its command-line
//! flag(s) and its help line. The command line (`cli.rs`), the config file (`file.rs`),
//! `--print-config` (`print.rs`) and the shipped `conf/rgunicorn.toml` all follow this table,
//! so a setting added here is known everywhere. Parsing the values is `apply.rs`'s job.

/// How a setting is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgShape {
    /// `--flag VALUE`; given twice, the last one wins (as with gunicorn's argparse).
    Value,
    /// `--flag VALUE`, repeatable; every value is kept (`-b`, `-e`).
    Repeated,
    /// `--flag` alone turns the setting on.
    Switch,
    /// The positional APP argument.
    Positional,
}

#[derive(Debug)]
pub(crate) struct Spec {
    /// gunicorn's setting name: the TOML key, and the name error messages use.
    pub name: &'static str,
    /// The long flag without its dashes, e.g. `workers`; for the positional, its value name.
    pub long: &'static str,
    pub short: Option<char>,
    /// More long spellings (gunicorn's historical ones).
    pub aliases: &'static [&'static str],
    pub shape: ArgShape,
    pub value_name: &'static str,
    pub help: &'static str,
}

const fn value(
    name: &'static str,
    long: &'static str,
    short: Option<char>,
    value_name: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        long,
        short,
        aliases: &[],
        shape: ArgShape::Value,
        value_name,
        help,
    }
}

/// Every setting, in gunicorn's documentation order and grouping (config file, logging,
/// process naming, security, server mechanics, server socket, worker processes).
pub(crate) const SPECS: &[Spec] = &[
    // Config file
    Spec {
        name: "wsgi_app",
        long: "APP",
        short: None,
        aliases: &[],
        shape: ArgShape::Positional,
        value_name: "APP",
        help: "The app: built-in `welcome` (default) or `echo`, or a Python `module:callable`",
    },
    // Logging
    value(
        "accesslog",
        "access-logfile",
        None,
        "FILE",
        "Access log file; `-` is stdout [default: none]",
    ),
    value(
        "access_log_format",
        "access-logformat",
        None,
        "STRING",
        "Access log format, gunicorn's %(x)s atoms",
    ),
    Spec {
        name: "errorlog",
        long: "error-logfile",
        short: None,
        aliases: &["log-file"],
        shape: ArgShape::Value,
        value_name: "FILE",
        help: "Error log file; `-` is stderr [default: -]",
    },
    value(
        "loglevel",
        "log-level",
        None,
        "LEVEL",
        "Error log level: debug, info, warning, error, critical [default: info]",
    ),
    value(
        "metrics_bind",
        "metrics-bind",
        None,
        "ADDRESS",
        "Serve /metrics (Prometheus), /healthz and /readyz on this address of their own (HOST:PORT or unix:PATH) [default: off]",
    ),
    value(
        "statsd_host",
        "statsd-host",
        None,
        "STATSD_ADDR",
        "Send gunicorn's statsd metrics from the master to HOST[:PORT] (UDP, port 8125) or unix:PATH [default: off]",
    ),
    value(
        "statsd_prefix",
        "statsd-prefix",
        None,
        "STATSD_PREFIX",
        "Prefix for every statsd metric name (a trailing dot is added) [default: none]",
    ),
    // Process naming
    value(
        "proc_name",
        "name",
        Some('n'),
        "STRING",
        "Process name, for ps and the logs [default: rgunicorn]",
    ),
    // Security
    value(
        "limit_request_line",
        "limit-request-line",
        None,
        "BYTES",
        "Longest request line, CRLF not counted, 0 to 8190 (0 = 8190) [default: 4094]",
    ),
    value(
        "limit_request_fields",
        "limit-request-fields",
        None,
        "INT",
        "Most header fields in a request, 0 to 32768 (0 = 32768) [default: 100]",
    ),
    Spec {
        name: "limit_request_field_size",
        long: "limit-request-field_size",
        short: None,
        aliases: &["limit-request-field-size"],
        shape: ArgShape::Value,
        value_name: "BYTES",
        help: "Longest header field line, CRLF counted, 0 to 65536 (0 = no limit per field) [default: 8190]",
    },
    value(
        "limit_request_body",
        "limit-request-body",
        None,
        "SIZE",
        "Largest request body (bytes, or e.g. 10M); 0 = no limit [default: 0]",
    ),
    value(
        "header_timeout",
        "header-timeout",
        None,
        "SECONDS",
        "The whole request head must arrive within this time [default: 30]",
    ),
    // Server mechanics
    Spec {
        name: "preload_app",
        long: "preload",
        short: None,
        aliases: &[],
        shape: ArgShape::Switch,
        value_name: "",
        help: "Import the Python app in the master before forking (shared memory, one import error before any worker; HUP keeps the loaded code)",
    },
    Spec {
        name: "reload",
        long: "reload",
        short: None,
        aliases: &[],
        shape: ArgShape::Switch,
        value_name: "",
        help: "Restart workers when a loaded Python module's file changes (development)",
    },
    value(
        "pythonpath",
        "pythonpath",
        None,
        "DIRS",
        "Comma-separated directories put on sys.path after the working directory",
    ),
    value(
        "chdir",
        "chdir",
        None,
        "DIR",
        "Change to this directory before loading the app",
    ),
    Spec {
        name: "raw_env",
        long: "env",
        short: Some('e'),
        aliases: &[],
        shape: ArgShape::Repeated,
        value_name: "KEY=VALUE",
        help: "Set an environment variable for the app (repeatable)",
    },
    value("pidfile", "pid", Some('p'), "FILE", "Write the master's pid to this file"),
    value(
        "user",
        "user",
        Some('u'),
        "USER",
        "Run workers as this user (name or uid)",
    ),
    value(
        "group",
        "group",
        Some('g'),
        "GROUP",
        "Run workers as this group (name or gid)",
    ),
    value(
        "umask",
        "umask",
        Some('m'),
        "INT",
        "umask for the unix sockets the server creates; octal with a leading 0 (022, 0o22) [default: sockets are 0660]",
    ),
    value(
        "forwarded_allow_ips",
        "forwarded-allow-ips",
        None,
        "IPS",
        "Peers trusted to set X-Forwarded-*: comma-separated IPs, or * [default: 127.0.0.1,::1]",
    ),
    // Server socket
    Spec {
        name: "bind",
        long: "bind",
        short: Some('b'),
        aliases: &[],
        shape: ArgShape::Repeated,
        value_name: "ADDRESS",
        help: "Listen on HOST:PORT, HOST, [IPV6]:PORT, unix:PATH or fd://N (repeatable) [default: 127.0.0.1:8000, or 0.0.0.0:$PORT]",
    },
    value(
        "backlog",
        "backlog",
        None,
        "INT",
        "Listen queue length [default: 2048]",
    ),
    Spec {
        name: "reuse_port",
        long: "reuse-port",
        short: None,
        aliases: &[],
        shape: ArgShape::Switch,
        value_name: "",
        help: "Set SO_REUSEPORT: one listener per worker",
    },
    // Worker processes
    value(
        "workers",
        "workers",
        Some('w'),
        "INT",
        "Worker processes [default: $WEB_CONCURRENCY, else 1]",
    ),
    value(
        "worker_class",
        "worker-class",
        Some('k'),
        "NAME",
        "Worker type: mio (native), or gunicorn's sync/gthread, which run the same worker [default: mio]",
    ),
    value(
        "threads",
        "threads",
        None,
        "INT",
        "App threads per worker, for apps that may block [default: 1]",
    ),
    value(
        "worker_connections",
        "worker-connections",
        None,
        "INT",
        "Most connections one worker holds at once [default: 1000]",
    ),
    value(
        "max_requests",
        "max-requests",
        None,
        "INT",
        "Restart a worker after this many requests; 0 = never [default: 0]",
    ),
    value(
        "max_requests_jitter",
        "max-requests-jitter",
        None,
        "INT",
        "Add up to this many (random) to max_requests per worker [default: 0]",
    ),
    value(
        "max_worker_memory",
        "max-worker-memory",
        None,
        "SIZE",
        "Restart a worker whose memory passes this (e.g. 512M); 0 = off [default: 0]",
    ),
    value(
        "timeout",
        "timeout",
        Some('t'),
        "SECONDS",
        "Kill a worker silent for this long; 0 = never [default: 30]",
    ),
    value(
        "request_timeout",
        "request-timeout",
        None,
        "SECONDS",
        "Answer 504 and recycle the worker when the app takes longer on one request; 0 = never [default: 0]",
    ),
    value(
        "boot_retries",
        "boot-retries",
        None,
        "INT",
        "Retry a worker that fails to boot (exit 3 or 4) this many times, waiting 1 s, 2 s, 4 s... (at most 30 s), before halting [default: 0]",
    ),
    value(
        "graceful_timeout",
        "graceful-timeout",
        None,
        "SECONDS",
        "Time a stopping worker gets to finish its requests [default: 30]",
    ),
    value(
        "shutdown_delay",
        "shutdown-delay",
        None,
        "SECONDS",
        "On TERM, answer 503 at /readyz for this long while still serving, before the listeners close [default: 0]",
    ),
    value(
        "keepalive",
        "keep-alive",
        None,
        "SECONDS",
        "Wait this long for the next request on a keep-alive connection; 0 = off [default: 2]",
    ),
];

/// The setting named `name` (its TOML key).
pub(crate) fn by_name(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

impl Spec {
    /// How an error message names this setting for a value from the command line:
    /// `--workers (workers)`, or `APP (wsgi_app)` for the positional.
    pub fn flag_and_name(&self) -> String {
        match self.shape {
            ArgShape::Positional => format!("{} ({})", self.long, self.name),
            _ => format!("--{} ({})", self.long, self.name),
        }
    }
}

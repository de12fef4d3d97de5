//! Validating one value of one setting into [`Settings`]: the rules for every setting
//! (types, ranges, gunicorn's spellings) and the one-line error a bad value becomes.
//! Where values come from is `cli.rs`'s and `file.rs`'s job; the order they are applied
//! in (the precedence) is `mod.rs`'s.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rgunicorn_http::{Limit, Limits};
use rgunicorn_workers::app::AppSpec;
use rgunicorn_workers::config::{ForwardedAllow, LogLevel, LogTarget};

use super::ops;
use super::spec::Spec;
use super::{BindAddr, ConfigError, Settings, WorkerClass};

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    /// The `RGUNICORN_CMD_ARGS` environment variable.
    CmdArgs,
    File(PathBuf),
    /// A default taken from an environment variable (`WEB_CONCURRENCY`, `PORT`, ...).
    EnvVar(&'static str),
}

impl fmt::Display for Origin {
    /// The prefix of a message: empty for the command line, else `SOURCE: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine | Origin::EnvVar(_) => Ok(()),
            Origin::CmdArgs => f.write_str("RGUNICORN_CMD_ARGS: "),
            Origin::File(path) => write!(f, "{}: ", path.display()),
        }
    }
}

/// One value as the user gave it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    /// Command-line text; any setting's value parses from text there.
    Arg(String),
    /// A repeatable flag's values, in order.
    Args(Vec<String>),
    /// A switch given on the command line.
    Switch,
    /// A config file value: its TOML type must fit the setting.
    Toml(toml::Value),
}

impl fmt::Display for Raw {
    /// The value as an error message quotes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Arg(s) => write!(f, "{s:?}"),
            Raw::Args(v) => write!(f, "{v:?}"),
            Raw::Switch => f.write_str("true"),
            Raw::Toml(v) => write!(f, "{v}"),
        }
    }
}

/// Longest timeout accepted, a year: far beyond any use, and small enough that adding it to
/// an `Instant` can never overflow in a worker.
pub(crate) const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// Largest count accepted: TOML integers are i64, and `--print-config` must round-trip.
const MAX_INT: u64 = i64::MAX as u64;

const SECONDS: &str = "a whole number of seconds from 0 to 31536000 (0 disables)";
const POSITIVE: &str = "a whole number >= 1";
const NATURAL: &str = "a whole number >= 0";
const SIZE: &str = "a size in bytes, optionally with a K, M, G or T suffix (0 disables)";
const PATH: &str = "a non-empty path";

/// gunicorn's default forwarded_allow_ips: the loopback addresses.
pub(crate) fn default_forwarded_allow() -> ForwardedAllow {
    ForwardedAllow::Ips(vec![
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ])
}

/// Defaults gunicorn takes from the environment: `WEB_CONCURRENCY` (workers), `PORT` (bind
/// 0.0.0.0:$PORT), `FORWARDED_ALLOW_IPS`. Each applies, and is validated, only when no
/// layer sets the setting (`is_set`).
pub(crate) fn env_defaults(
    settings: &mut Settings,
    env: &dyn Fn(&str) -> Option<String>,
    is_set: &dyn Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let uses = [
        ("workers", "WEB_CONCURRENCY"),
        ("bind", "PORT"),
        ("forwarded_allow_ips", "FORWARDED_ALLOW_IPS"),
    ];
    for (name, var) in uses {
        if is_set(name) {
            continue;
        }
        let Some(value) = env(var) else { continue };
        let Some(spec) = super::spec::by_name(name) else {
            continue;
        };
        let value = if var == "PORT" {
            // gunicorn: PORT alone means every interface, that port. Validate the port
            // itself so the message quotes what the user wrote.
            match value.trim().parse::<u16>() {
                Ok(port) => format!("0.0.0.0:{port}"),
                Err(_) => {
                    return Err(ConfigError::InvalidValue {
                        origin: Origin::EnvVar(var),
                        what: format!("{var} (bind)"),
                        value: format!("{value:?}"),
                        expected: "a port number from 0 to 65535".to_string(),
                    })
                }
            }
        } else {
            value
        };
        apply(settings, spec, &Raw::Arg(value), &Origin::EnvVar(var))?;
    }
    Ok(())
}

/// Validate `raw` as the value of `spec` and store it in `settings`.
pub(crate) fn apply(
    settings: &mut Settings,
    spec: &Spec,
    raw: &Raw,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let cx = Cx { spec, raw, origin };
    let w = &mut settings.worker;
    match spec.name {
        "wsgi_app" => {
            let app = cx.text()?;
            if AppSpec::parse(app).is_err() {
                return Err(cx.bad(
                    "a built-in app (welcome, echo) or a Python module:callable such as myapp.wsgi:app",
                ));
            }
            w.app = app.to_string();
        }
        "preload_app" => settings.preload_app = cx.switch()?,
        "reload" => w.python.reload = cx.switch()?,
        "pythonpath" => {
            w.python.pythonpath = cx
                .items()?
                .iter()
                .flat_map(|item| item.split(','))
                .map(str::trim)
                .filter(|dir| !dir.is_empty())
                // Relative entries resolve against the working directory the app is
                // imported in (after --chdir), as gunicorn's os.path.abspath does.
                .map(PathBuf::from)
                .collect()
        }
        "accesslog" => w.access_log = Some(log_target(cx.path()?, LogTarget::Stdout)),
        "access_log_format" => w.access_log_format = cx.text()?.to_string(),
        "errorlog" => w.error_log = log_target(cx.path()?, LogTarget::Stderr),
        "loglevel" => {
            w.log_level = match cx.text()?.trim().to_ascii_lowercase().as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warning" => LogLevel::Warning,
                "error" => LogLevel::Error,
                "critical" => LogLevel::Critical,
                _ => return Err(cx.bad("one of debug, info, warning, error, critical")),
            }
        }
        "proc_name" => {
            let name = cx.text()?;
            if name.is_empty() {
                return Err(cx.bad("a non-empty name"));
            }
            w.proc_name = name.to_string();
        }
        "limit_request_line" => cx.limit(&mut w.limits, Limit::RequestLine)?,
        "limit_request_fields" => cx.limit(&mut w.limits, Limit::Fields)?,
        "limit_request_field_size" => cx.limit(&mut w.limits, Limit::FieldSize)?,
        "limit_request_body" => w.limit_request_body = cx.size()?,
        "header_timeout" => {
            w.header_timeout = Duration::from_secs(cx.number(
                1,
                MAX_SECONDS,
                "a whole number of seconds from 1 to 31536000",
            )?)
        }
        "chdir" => {
            let dir = cx.path()?;
            if !dir.is_dir() {
                return Err(cx.bad("an existing directory"));
            }
            // gunicorn makes chdir absolute against the start directory.
            settings.chdir = Some(match std::env::current_dir() {
                Ok(cwd) => cwd.join(dir),
                Err(_) => dir.to_path_buf(),
            });
        }
        "raw_env" => {
            let mut vars = Vec::new();
            for item in cx.items()? {
                match item.split_once('=') {
                    Some((key, value)) if !key.is_empty() => {
                        vars.push((key.to_string(), value.to_string()))
                    }
                    _ => return Err(cx.bad_item(item, "KEY=VALUE with a non-empty KEY")),
                }
            }
            settings.raw_env = vars;
        }
        "pidfile" => settings.pidfile = Some(cx.path()?.to_path_buf()),
        "user" => {
            let (name, id) = cx.account(user_id, "an existing user name or a numeric uid")?;
            settings.user = Some(name);
            settings.uid = Some(id);
        }
        "group" => {
            let (name, id) = cx.account(group_id, "an existing group name or a numeric gid")?;
            settings.group = Some(name);
            settings.gid = Some(id);
        }
        "umask" => {
            const EXPECTED: &str =
                "a umask from 0 to 0o777 (decimal, or octal with a leading 0 or 0o)";
            let mask = match &cx.raw {
                Raw::Toml(toml::Value::Integer(i)) => u32::try_from(*i).ok(),
                _ => parse_auto_int(cx.text_or(EXPECTED)?),
            };
            settings.umask = Some(
                mask.filter(|m| *m <= 0o777)
                    .ok_or_else(|| cx.bad(EXPECTED))?,
            );
        }
        "forwarded_allow_ips" => {
            const EXPECTED: &str = "comma-separated IP addresses, or *";
            let mut ips = Vec::new();
            let mut all = false;
            for item in cx.items()? {
                for part in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match part {
                        "*" => all = true,
                        ip => ips.push(
                            ip.parse::<IpAddr>()
                                .map_err(|_| cx.bad_item(part, EXPECTED))?,
                        ),
                    }
                }
            }
            w.forwarded_allow = if all {
                ForwardedAllow::All
            } else {
                ForwardedAllow::Ips(ips)
            };
        }
        "bind" => {
            const EXPECTED: &str = "HOST, HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N";
            let mut binds = Vec::new();
            for item in cx.items()? {
                binds.push(parse_bind(item).ok_or_else(|| cx.bad_item(item, EXPECTED))?);
            }
            if binds.is_empty() {
                return Err(cx.bad("at least one address"));
            }
            settings.binds = binds;
        }
        "backlog" => {
            settings.backlog =
                cx.number(1, i32::MAX as u64, "a whole number from 1 to 2147483647")? as i32
        }
        "reuse_port" => settings.reuse_port = cx.switch()?,
        "workers" => settings.workers = cx.number(1, MAX_INT, POSITIVE)? as usize,
        "worker_class" => {
            settings.worker_class = match cx.text()?.trim() {
                "mio" => WorkerClass::Mio,
                "sync" => WorkerClass::Sync,
                "gthread" => WorkerClass::Gthread,
                _ => return Err(cx.bad(&format!("one of {}", WorkerClass::NAMES))),
            }
        }
        "threads" => w.threads = cx.number(1, MAX_INT, POSITIVE)? as usize,
        "worker_connections" => w.worker_connections = cx.number(1, MAX_INT, POSITIVE)? as usize,
        "max_requests" => w.max_requests = cx.number(0, MAX_INT, NATURAL)?,
        "max_requests_jitter" => settings.max_requests_jitter = cx.number(0, MAX_INT, NATURAL)?,
        "max_worker_memory" => settings.max_worker_memory = cx.size()?,
        "timeout" => w.timeout = cx.seconds()?,
        "request_timeout" => w.request_timeout = cx.seconds()?,
        "boot_retries" => {
            settings.boot_retries = cx.number(0, u64::from(u32::MAX), NATURAL)? as u32
        }
        "graceful_timeout" => w.graceful_timeout = cx.seconds()?,
        "keepalive" => w.keepalive = cx.seconds()?,
        "metrics_bind" => {
            let text = cx.text_or(ops::METRICS_BIND)?;
            settings.ops.metrics_bind =
                Some(ops::parse_metrics_bind(text).ok_or_else(|| cx.bad(ops::METRICS_BIND))?);
        }
        "statsd_host" => {
            let text = cx.text_or(ops::STATSD_HOST)?;
            settings.ops.statsd_host =
                Some(ops::parse_statsd_host(text).ok_or_else(|| cx.bad(ops::STATSD_HOST))?);
        }
        "statsd_prefix" => settings.ops.statsd_prefix = cx.text()?.to_string(),
        "shutdown_delay" => settings.ops.shutdown_delay = cx.seconds()?,
        // Every name in SPECS has an arm above (a unit test checks it).
        _ => {}
    }
    Ok(())
}

/// One value being validated, and how to complain about it.
struct Cx<'a> {
    spec: &'a Spec,
    raw: &'a Raw,
    origin: &'a Origin,
}

impl<'a> Cx<'a> {
    fn bad(&self, expected: &str) -> ConfigError {
        self.bad_quoted(self.raw.to_string(), expected)
    }

    /// One element of a list value is wrong: quote just that element.
    fn bad_item(&self, item: &str, expected: &str) -> ConfigError {
        self.bad_quoted(format!("{item:?}"), expected)
    }

    fn bad_quoted(&self, value: String, expected: &str) -> ConfigError {
        let what = match self.origin {
            Origin::CommandLine | Origin::CmdArgs => self.spec.flag_and_name(),
            Origin::File(_) => self.spec.name.to_string(),
            Origin::EnvVar(var) => format!("{var} ({})", self.spec.name),
        };
        ConfigError::InvalidValue {
            origin: self.origin.clone(),
            what,
            value,
            expected: expected.to_string(),
        }
    }

    fn text_or(&self, expected: &str) -> Result<&'a str, ConfigError> {
        match self.raw {
            Raw::Arg(s) | Raw::Toml(toml::Value::String(s)) => Ok(s),
            _ => Err(self.bad(expected)),
        }
    }

    fn text(&self) -> Result<&'a str, ConfigError> {
        self.text_or("a string")
    }

    fn path(&self) -> Result<&'a Path, ConfigError> {
        match self.text_or(PATH)? {
            "" => Err(self.bad(PATH)),
            s => Ok(Path::new(s)),
        }
    }

    /// A list setting: repeated flags, one string, or a TOML array of strings.
    fn items(&self) -> Result<Vec<&'a str>, ConfigError> {
        const EXPECTED: &str = "a string or an array of strings";
        match self.raw {
            Raw::Arg(s) | Raw::Toml(toml::Value::String(s)) => Ok(vec![s.as_str()]),
            Raw::Args(v) => Ok(v.iter().map(String::as_str).collect()),
            Raw::Toml(toml::Value::Array(values)) => values
                .iter()
                .map(|v| v.as_str().ok_or_else(|| self.bad(EXPECTED)))
                .collect(),
            _ => Err(self.bad(EXPECTED)),
        }
    }

    fn switch(&self) -> Result<bool, ConfigError> {
        match self.raw {
            Raw::Switch => Ok(true),
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            _ => Err(self.bad_or_quoted("true or false", |s| matches!(s.trim(), "true" | "false"))),
        }
    }

    /// A whole number within `min..=max`: text on the command line, an integer in the file.
    fn number(&self, min: u64, max: u64, expected: &str) -> Result<u64, ConfigError> {
        let n = match self.raw {
            Raw::Arg(s) => s.trim().parse::<u64>().ok(),
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            _ => None,
        };
        n.filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.bad_or_quoted(expected, |s| s.trim().parse::<u64>().is_ok()))
    }

    /// A config-file string whose text would have been a valid number or boolean
    /// (`workers = "3"`): say the quotes are the problem.
    fn bad_or_quoted(&self, expected: &str, fits_unquoted: impl Fn(&str) -> bool) -> ConfigError {
        match self.raw {
            Raw::Toml(toml::Value::String(s)) if fits_unquoted(s) => self.bad(&format!(
                "{expected}, written without quotes: {} = {}",
                self.spec.name,
                s.trim()
            )),
            _ => self.bad(expected),
        }
    }

    fn seconds(&self) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.number(0, MAX_SECONDS, SECONDS)?))
    }

    /// One of gunicorn's request limits, validated by the table the front shares.
    fn limit(&self, limits: &mut Limits, limit: Limit) -> Result<(), ConfigError> {
        let n = self.number(0, limit.max() as u64, limit.expected())?;
        limits.set(limit, n).map_err(|_| self.bad(limit.expected()))
    }

    /// A byte count: an integer, or text such as `512M`.
    fn size(&self) -> Result<u64, ConfigError> {
        match self.raw {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            _ => parse_size(self.text_or(SIZE)?),
        }
        .ok_or_else(|| self.bad(SIZE))
    }

    /// `--user`/`--group`: a name looked up in the system database, or a numeric id.
    fn account(
        &self,
        lookup: fn(&str) -> Option<u32>,
        expected: &str,
    ) -> Result<(String, u32), ConfigError> {
        let text = match self.raw {
            Raw::Toml(toml::Value::Integer(i)) => i.to_string(),
            _ => self.text_or(expected)?.trim().to_string(),
        };
        let id = match text.parse::<u32>() {
            Ok(id) => Some(id),
            Err(_) if !text.is_empty() => lookup(&text),
            Err(_) => None,
        };
        id.map(|id| (text, id)).ok_or_else(|| self.bad(expected))
    }
}

fn user_id(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn group_id(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn log_target(path: &Path, dash: LogTarget) -> LogTarget {
    if path == Path::new("-") {
        dash
    } else {
        LogTarget::File(path.to_path_buf())
    }
}

/// gunicorn's `auto_int`: `022` and `0o22` are octal, `0x12` hex, anything else decimal.
pub(crate) fn parse_auto_int(text: &str) -> Option<u32> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(oct) = t.strip_prefix("0o") {
        u32::from_str_radix(oct, 8).ok()
    } else if let Some(hex) = t.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

/// `512M`, `1g`, `64KiB`, `1048576`: binary multiples, as nginx reads sizes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// A `--bind` value, gunicorn's `parse_address` rules: `unix:PATH`, `unix://PATH`, `fd://N`,
/// `[V6]:PORT`, `HOST:PORT`, `HOST` (port 8000), `:PORT` and `""` (0.0.0.0).
pub(crate) fn parse_bind(text: &str) -> Option<BindAddr> {
    const DEFAULT_PORT: u16 = 8000;
    if let Some(path) = text
        .strip_prefix("unix://")
        .or_else(|| text.strip_prefix("unix:"))
    {
        return (!path.is_empty()).then(|| BindAddr::Unix(PathBuf::from(path)));
    }
    if let Some(fd) = text.strip_prefix("fd://") {
        return fd
            .parse::<i32>()
            .ok()
            .filter(|fd| *fd >= 0)
            .map(BindAddr::Fd);
    }
    let text = text.strip_prefix("tcp://").unwrap_or(text);
    let port = |p: &str| p.parse::<u16>().ok();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port(after.strip_prefix(':')?)?,
        };
        (host, port)
    } else {
        match text.split_once(':') {
            // A second ':' is an unbracketed IPv6 address: ambiguous, as in gunicorn.
            Some((_, p)) if p.contains(':') => return None,
            Some((host, p)) => (host, port(p)?),
            None => (text, DEFAULT_PORT),
        }
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%');
    host.chars().all(valid).then(|| BindAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

//! `--print-config`: the effective [`Settings`] written back as a TOML config file, every
//! setting in [`SPECS`] order, in a form `-c` reads back to the same settings.

use rgunicorn_workers::config::{ForwardedAllow, LogLevel, LogTarget};
use toml::Value;

use super::spec::SPECS;
use super::Settings;

pub(crate) fn to_toml(s: &Settings) -> String {
    let mut out = String::from("# rgunicorn effective settings (rgunicorn --print-config)\n");
    if let Some(path) = &s.config_file {
        out.push_str(&format!("# read from {}\n", path.display()));
    }
    for spec in SPECS {
        match value_of(s, spec.name) {
            Some(text) => out.push_str(&format!("{} = {text}\n", spec.name)),
            None => out.push_str(&format!("# {} is not set\n", spec.name)),
        }
    }
    if let Some(front) = &s.front_table {
        // Wrapped so nested tables come out as [front.x], not [x].
        let mut wrapper = toml::Table::new();
        wrapper.insert("front".to_string(), Value::Table(front.clone()));
        out.push('\n');
        out.push_str(&wrapper.to_string());
    }
    out
}

/// One setting's effective value as TOML text; `None` when an optional setting is unset.
fn value_of(s: &Settings, name: &str) -> Option<String> {
    let w = &s.worker;
    let v = match name {
        "wsgi_app" => text(&w.app),
        "accesslog" => log_target(w.access_log.as_ref()?, LogTarget::Stdout),
        "access_log_format" => text(&w.access_log_format),
        "errorlog" => log_target(&w.error_log, LogTarget::Stderr),
        "loglevel" => text(match w.log_level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }),
        "proc_name" => text(&w.proc_name),
        "limit_request_line" => int(w.limits.request_line as u64),
        "limit_request_fields" => int(w.limits.fields as u64),
        "limit_request_field_size" => int(w.limits.field_size as u64),
        "limit_request_body" => int(w.limit_request_body),
        "header_timeout" => int(w.header_timeout.as_secs()),
        "chdir" => text(&s.chdir.as_ref()?.to_string_lossy()),
        "preload_app" => Value::Boolean(s.preload_app),
        "reload" => Value::Boolean(w.python.reload),
        "pythonpath" => Value::Array(
            w.python
                .pythonpath
                .iter()
                .map(|p| Value::String(p.to_string_lossy().into_owned()))
                .collect(),
        ),
        "raw_env" => Value::Array(
            s.raw_env
                .iter()
                .map(|(k, v)| Value::String(format!("{k}={v}")))
                .collect(),
        ),
        "pidfile" => text(&s.pidfile.as_ref()?.to_string_lossy()),
        "user" => text(s.user.as_ref()?),
        "group" => text(s.group.as_ref()?),
        // Octal, as umasks are read; TOML's 0o prefix keeps it an integer.
        "umask" => {
            let m = s.umask.unwrap_or(super::UNIX_SOCKET_UMASK);
            return Some(format!("0o{m:03o}"));
        }
        "forwarded_allow_ips" => match &w.forwarded_allow {
            ForwardedAllow::All => text("*"),
            ForwardedAllow::Ips(ips) => {
                Value::Array(ips.iter().map(|ip| Value::String(ip.to_string())).collect())
            }
        },
        "bind" => Value::Array(
            s.binds
                .iter()
                .map(|b| Value::String(b.to_string()))
                .collect(),
        ),
        "backlog" => int(s.backlog as u64),
        "reuse_port" => Value::Boolean(s.reuse_port),
        "workers" => int(s.workers as u64),
        "worker_class" => text(s.worker_class.name()),
        "threads" => int(w.threads as u64),
        "worker_connections" => int(w.worker_connections as u64),
        "max_requests" => int(w.max_requests),
        "max_requests_jitter" => int(s.max_requests_jitter),
        "max_worker_memory" => int(s.max_worker_memory),
        "timeout" => int(w.timeout.as_secs()),
        "request_timeout" => int(w.request_timeout.as_secs()),
        "boot_retries" => int(u64::from(s.boot_retries)),
        "graceful_timeout" => int(w.graceful_timeout.as_secs()),
        "keepalive" => int(w.keepalive.as_secs()),
        "metrics_bind" => text(&s.ops.metrics_bind.as_ref()?.to_string()),
        "statsd_host" => text(&s.ops.statsd_host.as_ref()?.to_string()),
        "statsd_prefix" => text(&s.ops.statsd_prefix),
        "shutdown_delay" => int(s.ops.shutdown_delay.as_secs()),
        _ => return None,
    };
    Some(v.to_string())
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

/// TOML integers are i64; a larger byte size is written as text, which sizes accept.
fn int(n: u64) -> Value {
    i64::try_from(n).map_or_else(|_| Value::String(n.to_string()), Value::Integer)
}

/// `dash` is the stream `-` stands for in this setting; the other stream gets its
/// /dev name so the value still means the same thing when read back.
fn log_target(target: &LogTarget, dash: LogTarget) -> Value {
    match target {
        LogTarget::File(path) => text(&path.to_string_lossy()),
        t if *t == dash => text("-"),
        LogTarget::Stdout => text("/dev/stdout"),
        LogTarget::Stderr => text("/dev/stderr"),
    }
}

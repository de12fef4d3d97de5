//! The error log (gunicorn's line format, levels, reopen on USR1) and the access log
//! (gunicorn's `access_log_format` atoms), written by a logger thread so a slow disk
//! never stalls the event loop.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::{Mutex, OnceLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::clock::Civil;
use crate::config::{LogLevel, LogTarget};

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

fn open_target(target: &LogTarget) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        LogTarget::Stdout => Box::new(io::stdout()),
        LogTarget::Stderr => Box::new(io::stderr()),
        LogTarget::File(path) => Box::new(append(path)?),
    })
}

fn append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct ErrorLog {
    target: LogTarget,
    level: LogLevel,
    out: Box<dyn Write + Send>,
}

static ERROR_LOG: OnceLock<Mutex<ErrorLog>> = OnceLock::new();

/// Set where error-log lines go. Called by the master at start and on reload, and
/// inherited by workers through fork. Fails when a log file cannot be opened.
pub fn init(target: &LogTarget, level: LogLevel) -> io::Result<()> {
    let out = open_target(target)?;
    let fresh = ErrorLog {
        target: target.clone(),
        level,
        out,
    };
    match ERROR_LOG.get() {
        Some(lock) => {
            if let Ok(mut log) = lock.lock() {
                *log = fresh;
            }
        }
        None => {
            let _ = ERROR_LOG.set(Mutex::new(fresh));
        }
    }
    Ok(())
}

/// Reopen the error log file (USR1, after logrotate moved it).
pub fn reopen() -> io::Result<()> {
    if let Some(lock) = ERROR_LOG.get() {
        if let Ok(mut log) = lock.lock() {
            log.out = open_target(&log.target)?;
        }
    }
    Ok(())
}

pub fn enabled(level: LogLevel) -> bool {
    match ERROR_LOG.get() {
        Some(lock) => lock.lock().map(|log| level >= log.level).unwrap_or(true),
        None => level >= LogLevel::Info,
    }
}

/// Write one error-log line: `[2026-11-27 00:57:07 +0000] [PID] [LEVEL] message`.
pub fn write(level: LogLevel, message: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "{} [{}] [{}] {}\n",
        Civil::now().error_log_time(),
        std::process::id(),
        level.name(),
        message
    );
    match ERROR_LOG.get().and_then(|lock| lock.lock().ok()) {
        Some(mut log) => {
            let _ = log.out.write_all(line.as_bytes());
            let _ = log.out.flush();
        }
        None => {
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Debug, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_warning { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Warning, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_error { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_critical { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Critical, format_args!($($t)*)) } }

enum LogMsg {
    Line(String),
    Reopen,
}

/// The access log: lines go over a bounded channel to a writer thread. If the disk is so
/// slow that the channel fills, lines are dropped and counted rather than stalling requests.
#[derive(Clone)]
pub struct AccessLog {
    tx: Sender<LogMsg>,
    format: std::sync::Arc<Vec<Atom>>,
}

impl AccessLog {
    /// Start the writer thread (after fork: threads do not survive it).
    pub fn start(target: &LogTarget, format: &str) -> io::Result<AccessLog> {
        let out = open_target(target)?;
        let (tx, rx) = crossbeam_channel::bounded(8192);
        let target = target.clone();
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || access_writer(rx, target, out))?;
        Ok(AccessLog {
            tx,
            format: std::sync::Arc::new(compile(format)),
        })
    }

    pub fn log(&self, record: &AccessRecord) {
        let mut line = String::with_capacity(160);
        render(&self.format, record, &mut line);
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(LogMsg::Line(line)) {
            crate::log_warning!("access log writer is behind; a line was dropped");
        }
    }

    pub fn reopen(&self) {
        let _ = self.tx.try_send(LogMsg::Reopen);
    }
}

fn access_writer(rx: Receiver<LogMsg>, target: LogTarget, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    while let Ok(msg) = rx.recv() {
        match msg {
            LogMsg::Line(line) => {
                let _ = out.write_all(line.as_bytes());
            }
            LogMsg::Reopen => {
                let _ = out.flush();
                match open_target(&target) {
                    Ok(fresh) => out = BufWriter::new(fresh),
                    Err(err) => crate::log_error!("cannot reopen access log: {err}"),
                }
            }
        }
        if rx.is_empty() {
            let _ = out.flush();
        }
    }
    let _ = out.flush();
}

/// What one access-log line is made from.
pub struct AccessRecord<'a> {
    pub environ: &'a crate::app::Environ,
    pub status: u16,
    pub response_headers: &'a crate::app::Headers,
    /// Body bytes sent, when known.
    pub length: Option<u64>,
    pub duration: std::time::Duration,
}

/// One piece of a compiled access_log_format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Text(String),
    Var(String),
    RequestHeader(String),
    ResponseHeader(String),
    Environ(String),
}

/// Compile gunicorn's `%(name)s` format once; unknown atoms render as "-".
fn compile(format: &str) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find("%(") {
        let Some(end) = rest[start..].find(")s") else {
            break;
        };
        if start > 0 {
            atoms.push(Atom::Text(rest[..start].to_string()));
        }
        let name = &rest[start + 2..start + end];
        atoms.push(if let Some(h) = braced(name, 'i') {
            Atom::RequestHeader(h)
        } else if let Some(h) = braced(name, 'o') {
            Atom::ResponseHeader(h)
        } else if let Some(v) = braced(name, 'e') {
            Atom::Environ(v)
        } else {
            Atom::Var(name.to_string())
        });
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        atoms.push(Atom::Text(rest.to_string()));
    }
    atoms
}

fn braced(name: &str, kind: char) -> Option<String> {
    let inner = name
        .strip_prefix('{')?
        .strip_suffix(kind)?
        .strip_suffix('}')?;
    Some(inner.to_ascii_lowercase())
}

fn render(atoms: &[Atom], rec: &AccessRecord, out: &mut String) {
    use std::fmt::Write as _;
    let env = rec.environ;
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for atom in atoms {
        match atom {
            Atom::Text(text) => out.push_str(text),
            Atom::RequestHeader(name) => out.push_str(&dash(env.header(name).unwrap_or(""))),
            Atom::ResponseHeader(name) => out.push_str(&dash(
                rec.response_headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_ref())
                    .unwrap_or(""),
            )),
            Atom::Environ(name) => {
                let vars = env.cgi_vars();
                let value = vars
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str());
                out.push_str(&dash(value.unwrap_or("")));
            }
            Atom::Var(var) => {
                let _ = match var.as_str() {
                    "h" => write!(out, "{}", dash(&env.remote_addr)),
                    "l" => write!(out, "-"),
                    "u" => write!(out, "-"),
                    "t" => write!(out, "{}", Civil::now().access_log_time()),
                    "r" => write!(
                        out,
                        "{} {} {}",
                        env.method, env.raw_uri, env.server_protocol
                    ),
                    "s" => write!(out, "{}", rec.status),
                    "m" => write!(out, "{}", env.method),
                    "U" => write!(out, "{}", env.path_info),
                    "q" => write!(out, "{}", env.query_string),
                    "H" => write!(out, "{}", env.server_protocol),
                    "b" => match rec.length {
                        Some(n) => write!(out, "{n}"),
                        None => write!(out, "-"),
                    },
                    "B" => write!(out, "{}", rec.length.unwrap_or(0)),
                    "f" => write!(out, "{}", dash(env.header("referer").unwrap_or(""))),
                    "a" => write!(out, "{}", dash(env.header("user-agent").unwrap_or(""))),
                    "T" => write!(out, "{}", rec.duration.as_secs()),
                    "M" => write!(out, "{}", rec.duration.as_millis()),
                    "D" => write!(out, "{}", rec.duration.as_micros()),
                    "L" => write!(out, "{:.6}", rec.duration.as_secs_f64()),
                    "p" => write!(out, "<{}>", std::process::id()),
                    _ => write!(out, "-"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Environ;

    #[test]
    fn renders_gunicorn_atoms() {
        let environ = Environ {
            method: "GET".into(),
            path_info: "/a".into(),
            raw_uri: "/a?x=1".into(),
            query_string: "x=1".into(),
            server_protocol: "HTTP/1.1".into(),
            remote_addr: "127.0.0.1".into(),
            headers: vec![("User-Agent".into(), "curl/8".into())],
            ..Environ::default()
        };
        let headers: crate::app::Headers = vec![("Content-Type".into(), "text/plain".into())];
        let rec = AccessRecord {
            environ: &environ,
            status: 200,
            response_headers: &headers,
            length: Some(12),
            duration: std::time::Duration::from_micros(1500),
        };
        let atoms = compile(
            r#"%(h)s "%(r)s" %(s)s %(b)s %(B)s "%(a)s" %(f)s %(D)s %(M)s %({content-type}o)s %({User-Agent}i)s %(U)s %(q)s"#,
        );
        let mut out = String::new();
        render(&atoms, &rec, &mut out);
        assert_eq!(
            out,
            r#"127.0.0.1 "GET /a?x=1 HTTP/1.1" 200 12 12 "curl/8" - 1500 1 text/plain curl/8 /a x=1"#
        );
    }
}

//! The error log (gunicorn's line format, levels, reopen on USR1) and the access log
//! (gunicorn's `access_log_format` atoms), written by a logger thread so a slow disk
//! never stalls the event loop.
//!
//! Every error-log line at warning level or above is counted by level into the shared
//! table when the process counts (`rgunicorn_metrics::log_lines`, gunicorn's statsd
//! `gunicorn.log.<level>`): before the `--log-level` filter, as gunicorn counts, so an
//! error is counted even when the level hides its line. [`log_exception!`] writes an
//! `ERROR` line counted as an exception (gunicorn's `log.exception`).
//!
//! A line that cannot be written (a full disk, a writer thread that fell behind) is
//! dropped, never waited for, and counted: the error log says once when the access log
//! starts failing, and how many lines were lost (and why) once it can be written again.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rgunicorn_metrics::log_lines::{self, Logged};
use rgunicorn_process::log_lines::{LineLog, Lost, Report};

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
    /// Lines that could not be written since the last one that could, and why.
    lost: Lost,
}

impl ErrorLog {
    /// Write one line; first, if lines were lost, the note that says so.
    fn emit(&mut self, line: &str) {
        if let Some(note) = self.lost.note("error-log") {
            log_lines::count(Logged::Warning);
            let note = format!(
                "{} [{}] [WARNING] {note}\n",
                Civil::now().error_log_time(),
                std::process::id()
            );
            if write_flushed(&mut self.out, note.as_bytes()).is_ok() {
                self.lost = Lost::default();
            }
        }
        if let Err(err) = write_flushed(&mut self.out, line.as_bytes()) {
            self.lost.add(1, &err);
        }
    }
}

fn write_flushed(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
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
        lost: Lost::default(),
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

/// Reopen the error log file (USR1, after logrotate moved it). On failure the old file
/// stays in use, the failure is logged as an error (there), and returned.
pub fn reopen() -> io::Result<()> {
    let Some(mut log) = ERROR_LOG.get().and_then(|lock| lock.lock().ok()) else {
        return Ok(());
    };
    match open_target(&log.target) {
        Ok(out) => {
            log.out = out;
            Ok(())
        }
        Err(err) => {
            let what = match &log.target {
                LogTarget::File(path) => path.display().to_string(),
                LogTarget::Stdout | LogTarget::Stderr => "-".to_string(),
            };
            let err = io::Error::new(err.kind(), format!("{what}: {err}"));
            log_lines::count(Logged::Error);
            let line = format!(
                "{} [{}] [ERROR] cannot reopen the error log {err}; still writing to the old file\n",
                Civil::now().error_log_time(),
                std::process::id()
            );
            log.emit(&line);
            Err(err)
        }
    }
}

pub fn enabled(level: LogLevel) -> bool {
    match ERROR_LOG.get() {
        Some(lock) => lock.lock().map(|log| level >= log.level).unwrap_or(true),
        None => level >= LogLevel::Info,
    }
}

/// The counter a line at `level` goes to (none below warning).
fn counted_as(level: LogLevel) -> Option<Logged> {
    match level {
        LogLevel::Critical => Some(Logged::Critical),
        LogLevel::Error => Some(Logged::Error),
        LogLevel::Warning => Some(Logged::Warning),
        LogLevel::Info | LogLevel::Debug => None,
    }
}

/// Write one error-log line: `[2026-11-27 00:57:07 +0000] [PID] [LEVEL] message`.
pub fn write(level: LogLevel, message: fmt::Arguments) {
    if let Some(what) = counted_as(level) {
        log_lines::count(what);
    }
    write_line(level, message);
}

/// Write an `ERROR` line that reports an exception (an app that raised or panicked, with
/// its traceback when it has one), counted as one.
pub fn write_exception(message: fmt::Arguments) {
    log_lines::count(Logged::Exception);
    write_line(LogLevel::Error, message);
}

fn write_line(level: LogLevel, message: fmt::Arguments) {
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
        Some(mut log) => log.emit(&line),
        None => {
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Write text to the error log as it is, without a line prefix: what a Python app writes to
/// `wsgi.errors` (gunicorn hands apps the error log's stream itself).
pub fn write_raw(text: &[u8]) {
    match ERROR_LOG.get().and_then(|lock| lock.lock().ok()) {
        Some(mut log) => {
            let _ = log.out.write_all(text);
            let _ = log.out.flush();
        }
        None => {
            let _ = io::stderr().write_all(text);
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
/// An `ERROR` line counted as an exception (gunicorn's `log.exception`).
#[macro_export]
macro_rules! log_exception { ($($t:tt)*) => { $crate::log::write_exception(format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_critical { ($($t:tt)*) => { $crate::log::write($crate::config::LogLevel::Critical, format_args!($($t)*)) } }

enum LogMsg {
    Line(String),
    Reopen,
}

/// The access log: lines go over a bounded channel to a writer thread. If the disk is so
/// slow that the channel fills, lines are dropped and counted rather than stalling
/// requests; the writer reports them with its own losses.
#[derive(Clone)]
pub struct AccessLog {
    tx: Sender<LogMsg>,
    format: Arc<Vec<Atom>>,
    /// Lines dropped because the writer's queue was full, not reported yet.
    behind: Arc<AtomicU64>,
}

impl AccessLog {
    /// Start the writer thread (after fork: threads do not survive it).
    pub fn start(target: &LogTarget, format: &str) -> io::Result<AccessLog> {
        let out = open_target(target)?;
        let (tx, rx) = crossbeam_channel::bounded(8192);
        let behind = Arc::new(AtomicU64::new(0));
        let mut writer = AccessWriter::new(out, Arc::clone(&behind));
        let target = target.clone();
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&rx, &target))?;
        Ok(AccessLog {
            tx,
            format: Arc::new(compile(format)),
            behind,
        })
    }

    pub fn log(&self, record: &AccessRecord) {
        let mut line = String::with_capacity(160);
        render(&self.format, record, &mut line);
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(LogMsg::Line(line)) {
            self.behind.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn reopen(&self) {
        let _ = self.tx.try_send(LogMsg::Reopen);
    }
}

/// Lines gathered before one write.
const BATCH: usize = 64 * 1024;

/// The access-log writer thread's state: a batch of lines, written whenever the queue is
/// empty or the batch is full, and what was lost since the file could last be written.
struct AccessWriter {
    out: Box<dyn Write + Send>,
    batch: Vec<u8>,
    behind: Arc<AtomicU64>,
    lines: LineLog,
}

impl AccessWriter {
    fn new(out: Box<dyn Write + Send>, behind: Arc<AtomicU64>) -> AccessWriter {
        AccessWriter {
            out,
            batch: Vec::with_capacity(BATCH),
            behind,
            lines: LineLog::default(),
        }
    }

    fn run(&mut self, rx: &Receiver<LogMsg>, target: &LogTarget) {
        while let Ok(msg) = rx.recv() {
            match msg {
                LogMsg::Line(line) => self.batch.extend_from_slice(line.as_bytes()),
                LogMsg::Reopen => {
                    log_report(self.write_batch());
                    match open_target(target) {
                        Ok(fresh) => self.out = fresh,
                        Err(err) => crate::log_error!("cannot reopen the access log: {err}"),
                    }
                }
            }
            if rx.is_empty() || self.batch.len() >= BATCH {
                log_report(self.write_batch());
            }
        }
        log_report(self.write_batch());
        if let Some(note) = self.lines.unreported("access-log") {
            crate::log_error!("{note}; stopping with the access log still failing");
        }
    }

    /// Write the batch. A failure drops its lines (counted; the first failure of an
    /// episode is news); the first write that succeeds after losses reports them.
    fn write_batch(&mut self) -> Report {
        let behind = self.behind.swap(0, Ordering::Relaxed);
        self.lines
            .dropped(behind, &"the writer was behind: its queue was full");
        let report = self
            .lines
            .write(&mut *self.out, &self.batch, "access log", "access-log");
        self.batch.clear();
        report
    }
}

/// Say what a write of the access log has to tell the error log.
fn log_report(report: Report) {
    match report {
        Report::Nothing => {}
        Report::Failing(text) => crate::log_error!("{text}"),
        Report::Recovered(text) => crate::log_warning!("{text}"),
    }
}

/// What one access-log line is made from.
pub struct AccessRecord<'a> {
    pub environ: &'a crate::app::Environ,
    pub status: u16,
    pub response_headers: &'a [crate::app::Header],
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
    /// `json`: the whole line is one JSON object ([`crate::access_json`]).
    Json,
}

/// Compile gunicorn's `%(name)s` format once; unknown atoms render as "-".
fn compile(format: &str) -> Vec<Atom> {
    if format.trim() == "json" {
        return vec![Atom::Json];
    }
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
            Atom::Json => crate::access_json::render(rec, out),
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

    /// A file on a disk that can fill up: takes at most `room` more bytes, then ENOSPC.
    #[derive(Clone, Default)]
    struct Disk(Arc<Mutex<(Vec<u8>, Option<usize>)>>);

    impl Disk {
        fn set_room(&self, room: Option<usize>) {
            self.0.lock().unwrap().1 = room;
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap().0).into_owned()
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut disk = self.0.lock().unwrap();
            let n = match disk.1 {
                Some(0) => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                Some(room) => buf.len().min(room),
                None => buf.len(),
            };
            disk.0.extend_from_slice(&buf[..n]);
            if let Some(room) = disk.1.as_mut() {
                *room -= n;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(writer: &mut AccessWriter, lines: &[&str]) -> Report {
        for line in lines {
            writer
                .batch
                .extend_from_slice(format!("{line}\n").as_bytes());
        }
        writer.write_batch()
    }

    #[test]
    fn access_lines_lost_on_a_full_disk_are_counted_and_reported_once_it_has_room() {
        let disk = Disk::default();
        let behind = Arc::new(AtomicU64::new(0));
        let mut writer = AccessWriter::new(Box::new(disk.clone()), Arc::clone(&behind));
        assert_eq!(lines(&mut writer, &["a1", "a2"]), Report::Nothing);
        // The disk fills in the middle of the second line of a batch.
        disk.set_room(Some(5));
        let failing = lines(&mut writer, &["b1", "b2", "b3"]);
        assert!(
            matches!(&failing, Report::Failing(t) if t.contains("No space left on device")),
            "{failing:?}"
        );
        // Still full: no news, more losses; and two lines the loop could not queue.
        disk.set_room(Some(0));
        assert_eq!(lines(&mut writer, &["c1"]), Report::Nothing);
        behind.fetch_add(2, Ordering::Relaxed);
        // Room again: the next write succeeds and says what was lost: b3, c1 and the
        // two never queued (b2 is whole but for its newline, which comes before d1).
        disk.set_room(None);
        assert_eq!(
            lines(&mut writer, &["d1"]),
            Report::Recovered(
                "4 access-log line(s) could not be written (No space left on device (os error 28)) \
                 and were dropped; writing again"
                    .into()
            )
        );
        // The cut line is ended before the next one; what was written stays whole.
        assert_eq!(disk.text(), "a1\na2\nb1\nb2\nd1\n");
        assert_eq!(lines(&mut writer, &["e1"]), Report::Nothing);
    }

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
        let headers: Vec<crate::app::Header> = vec![("Content-Type".into(), "text/plain".into())];
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

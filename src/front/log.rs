//! The front's access log (nginx "combined") and error log (nginx's `YYYY/MM/DD HH:MM:SS
//! [level] message`), shared by the event loops. Access lines are buffered per event loop
//! thread (nginx's `buffer=`, `access_log_buffer`) and written whole lines at a time when
//! the buffer fills, at each deadline sweep of the loop (every 0.2 s) and when it ends;
//! error lines are written at once. Each write is one `write` on a file opened for
//! appending, so lines from several threads never interleave. USR1 reopens the files.
//! Times are UTC: the container's clock, without a time zone database.
//!
//! A write the disk refuses drops its lines, counted per log ([`LineLog`], as the
//! workers count theirs): one error line when the access log starts failing, and the
//! count and reason once it can be written again (the error log's own losses are said in
//! it the same way). Nothing is dropped for a full buffer: a full buffer is written.
//! Warn and error lines are counted into the front's cells of the master's shared table
//! (`rgunicorn_log_messages_total{process="front"}`); a standalone front counts nothing.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use rgunicorn_http::date::{unix_now, Civil};
use rgunicorn_metrics::log_lines::{self, Logged};
use rgunicorn_process::log_lines::{LineLog, Report};

thread_local! {
    /// This thread's access lines not yet written.
    static PENDING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The `$time_local` text and the second it is for: formatted once a second.
    static CLF_TIME: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

use super::settings::LogTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Count a warn or error line into the front's cells of the shared table, when the
/// master that forked the front counts (`rgunicorn_metrics::log_lines`).
fn count(level: Level) {
    match level {
        Level::Warn => log_lines::count(Logged::Warning),
        Level::Error => log_lines::count(Logged::Error),
        Level::Info => {}
    }
}

/// One log destination, reopenable, and what it could not write.
struct Sink {
    target: LogTarget,
    /// The log in words (`access log`) and in its loss note (`access-log`).
    name: &'static str,
    what: &'static str,
    state: Mutex<SinkState>,
}

struct SinkState {
    file: Option<File>,
    lines: LineLog,
}

impl Sink {
    fn open(target: LogTarget, name: &'static str, what: &'static str) -> std::io::Result<Sink> {
        let file = match &target {
            LogTarget::File(path) => Some(append(path)?),
            _ => None,
        };
        Ok(Sink {
            target,
            name,
            what,
            state: Mutex::new(SinkState {
                file,
                lines: LineLog::default(),
            }),
        })
    }

    /// Open the file again (after logrotate moved it). On failure the old file stays in
    /// use; the error names the file.
    fn reopen(&self) -> std::io::Result<()> {
        if let LogTarget::File(path) = &self.target {
            let file = append(path).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot reopen the {} {}: {err}", self.name, path.display()),
                )
            })?;
            if let Ok(mut state) = self.state.lock() {
                state.file = Some(file);
            }
        }
        Ok(())
    }

    /// Write whole lines at once. Logging never takes the front down: lines the log
    /// refuses are dropped and counted; the report says what the error log should.
    fn write(&self, lines: &[u8]) -> Report {
        let Ok(mut state) = self.state.lock() else {
            return Report::Nothing;
        };
        let SinkState { file, lines: log } = &mut *state;
        let (name, what) = (self.name, self.what);
        match &self.target {
            LogTarget::Off => Report::Nothing,
            LogTarget::Stdout => log.write(&mut std::io::stdout().lock(), lines, name, what),
            LogTarget::Stderr => log.write(&mut std::io::stderr().lock(), lines, name, what),
            LogTarget::File(_) => match file {
                Some(file) => log.write(file, lines, name, what),
                None => Report::Nothing,
            },
        }
    }

    /// Lines lost and never reported (said as the front stops).
    fn unreported(&self) -> Option<String> {
        let state = self.state.lock().ok()?;
        state.lines.unreported(self.what)
    }
}

fn append(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What one finished request leaves in the access log.
pub struct AccessEntry<'a> {
    pub remote: &'a str,
    pub request_line: &'a str,
    pub status: u16,
    pub body_bytes: u64,
    pub referer: &'a str,
    pub user_agent: &'a str,
    /// The workers gave this response (the front only passed it on).
    pub from_upstream: bool,
}

pub struct Logger {
    access: Sink,
    error: Sink,
    /// Log the responses the workers gave too (see `FrontSettings::log_upstream_answers`).
    upstream_answers: bool,
    /// Access lines a thread keeps before writing them (0: each at once).
    buffer: usize,
}

impl Logger {
    /// `buffer`: bytes of access lines each event loop keeps before writing them.
    pub fn open(
        access: &LogTarget,
        error: &LogTarget,
        upstream_answers: bool,
        buffer: usize,
    ) -> std::io::Result<Logger> {
        Ok(Logger {
            access: Sink::open(access.clone(), "access log", "access-log")?,
            error: Sink::open(error.clone(), "error log", "error-log")?,
            upstream_answers,
            buffer,
        })
    }

    /// For tests and early failures: stderr only.
    pub fn stderr() -> Logger {
        let sink = |target, name, what| Sink {
            target,
            name,
            what,
            state: Mutex::new(SinkState {
                file: None,
                lines: LineLog::default(),
            }),
        };
        Logger {
            access: sink(LogTarget::Off, "access log", "access-log"),
            error: sink(LogTarget::Stderr, "error log", "error-log"),
            upstream_answers: true,
            buffer: 0,
        }
    }

    /// Reopen both files (USR1), each even when the other fails. A failure is one error
    /// line naming the file (the old file stays in use), and nothing else.
    pub fn reopen(&self) {
        let mut reopened = true;
        for sink in [&self.access, &self.error] {
            if let Err(err) = sink.reopen() {
                self.error(&format!("{err}; still writing to the old file"));
                reopened = false;
            }
        }
        if reopened {
            self.info("logs reopened");
        }
    }

    pub fn log(&self, level: Level, message: &str) {
        count(level);
        let report = self.error.write(error_line(level, message).as_bytes());
        // The error log cannot say that it fails; once it works again, it says what it lost.
        if let Report::Recovered(note) = report {
            count(Level::Warn);
            self.error.write(error_line(Level::Warn, &note).as_bytes());
        }
    }

    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`
    pub fn access(&self, entry: &AccessEntry<'_>) {
        if self.access.target == LogTarget::Off || entry.from_upstream && !self.upstream_answers {
            return;
        }
        PENDING.with(|pending| {
            let mut buf = pending.borrow_mut();
            buf.extend_from_slice(entry.remote.as_bytes());
            buf.extend_from_slice(b" - - [");
            CLF_TIME.with(|cache| {
                let mut cache = cache.borrow_mut();
                let now = unix_now();
                if cache.0 != now {
                    *cache = (now, Civil::from_unix(now).clf_time());
                }
                buf.extend_from_slice(cache.1.as_bytes());
            });
            buf.extend_from_slice(b"] \"");
            escape_into(&mut buf, entry.request_line);
            let _ = write!(buf, "\" {} {} \"", entry.status, entry.body_bytes);
            escape_or_dash_into(&mut buf, entry.referer);
            buf.extend_from_slice(b"\" \"");
            escape_or_dash_into(&mut buf, entry.user_agent);
            buf.extend_from_slice(b"\"\n");
            if buf.len() >= self.buffer {
                self.write_access(&mut buf);
            }
        });
    }

    /// Write this thread's buffered access lines (the event loop's sweep, and its end).
    pub fn flush_access(&self) {
        PENDING.with(|pending| {
            let mut buf = pending.borrow_mut();
            if !buf.is_empty() {
                self.write_access(&mut buf);
            }
        });
    }

    fn write_access(&self, buf: &mut Vec<u8>) {
        let report = self.access.write(buf);
        buf.clear();
        match report {
            Report::Nothing => {}
            Report::Failing(text) => self.error(&text),
            Report::Recovered(text) => self.warn(&text),
        }
    }

    /// Say what the logs lost and never reported (the front is stopping).
    pub fn report_unreported(&self) {
        if let Some(note) = self.access.unreported() {
            self.error(&format!(
                "{note}; stopping with the access log still failing"
            ));
        }
    }
}

/// `YYYY/MM/DD HH:MM:SS [level] PID: message`, as nginx's error log.
fn error_line(level: Level, message: &str) -> String {
    let now = Civil::now();
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02} [{}] {}: {message}\n",
        now.year,
        now.month,
        now.day,
        now.hour,
        now.minute,
        now.second,
        level.name(),
        std::process::id(),
    )
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        if b == b'"' || b == b'\\' || !(b' '..=b'~').contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

fn escape_or_dash_into(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        out.push(b'-');
    } else {
        escape_into(out, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_nginx() {
        let mut out = Vec::new();
        escape_into(&mut out, "GET /\"x\" HTTP/1.1");
        assert_eq!(out, b"GET /\\x22x\\x22 HTTP/1.1");
        out.clear();
        escape_or_dash_into(&mut out, "");
        assert_eq!(out, b"-");
    }
}

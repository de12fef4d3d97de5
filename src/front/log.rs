//! The front's access log (nginx "combined") and error log (nginx's `YYYY/MM/DD HH:MM:SS
//! [level] message`), shared by the event loops. Access lines are buffered per event loop
//! thread (nginx's `buffer=`, `access_log_buffer`) and written whole lines at a time when
//! the buffer fills, at each deadline sweep of the loop and when it ends; error lines are
//! written at once. Each write is one `write` on a file opened for appending, so lines
//! from several threads never interleave. USR1 reopens the files. Times are UTC: the
//! container's clock, without a time zone database.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use rgunicorn_http::date::{unix_now, Civil};

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

/// One log destination, reopenable.
struct Sink {
    target: LogTarget,
    file: Mutex<Option<File>>,
}

impl Sink {
    fn open(target: LogTarget) -> std::io::Result<Sink> {
        let file = match &target {
            LogTarget::File(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
            _ => None,
        };
        Ok(Sink {
            target,
            file: Mutex::new(file),
        })
    }

    fn reopen(&self) -> std::io::Result<()> {
        if let LogTarget::File(path) = &self.target {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            if let Ok(mut slot) = self.file.lock() {
                *slot = Some(file);
            }
        }
        Ok(())
    }

    /// Write whole lines at once. Logging must never take the front down: write errors
    /// are dropped.
    fn write(&self, lines: &[u8]) {
        let _ = match &self.target {
            LogTarget::Off => Ok(()),
            LogTarget::Stdout => std::io::stdout().lock().write_all(lines),
            LogTarget::Stderr => std::io::stderr().lock().write_all(lines),
            LogTarget::File(_) => match self.file.lock() {
                Ok(guard) => match guard.as_ref() {
                    Some(mut file) => file.write_all(lines),
                    None => Ok(()),
                },
                Err(_) => Ok(()),
            },
        };
    }
}

/// What one finished request leaves in the access log.
pub struct AccessEntry<'a> {
    pub remote: IpAddr,
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
            access: Sink::open(access.clone())?,
            error: Sink::open(error.clone())?,
            upstream_answers,
            buffer,
        })
    }

    /// For tests and early failures: stderr only.
    pub fn stderr() -> Logger {
        Logger {
            access: Sink {
                target: LogTarget::Off,
                file: Mutex::new(None),
            },
            error: Sink {
                target: LogTarget::Stderr,
                file: Mutex::new(None),
            },
            upstream_answers: true,
            buffer: 0,
        }
    }

    pub fn reopen(&self) -> std::io::Result<()> {
        self.access.reopen()?;
        self.error.reopen()
    }

    pub fn log(&self, level: Level, message: &str) {
        let now = Civil::now();
        let line = format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02} [{}] {}: {message}\n",
            now.year,
            now.month,
            now.day,
            now.hour,
            now.minute,
            now.second,
            level.name(),
            std::process::id(),
        );
        self.error.write(line.as_bytes());
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
            let _ = write!(buf, "{} - - [", entry.remote);
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
                self.access.write(&buf);
                buf.clear();
            }
        });
    }

    /// Write this thread's buffered access lines (the event loop's sweep, and its end).
    pub fn flush_access(&self) {
        PENDING.with(|pending| {
            let mut buf = pending.borrow_mut();
            if !buf.is_empty() {
                self.access.write(&buf);
                buf.clear();
            }
        });
    }
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

//! The front's access log (nginx "combined") and error log (nginx's `YYYY/MM/DD HH:MM:SS
//! [level] message`), shared by the event loops. Each line is one `write` on a file opened
//! for appending, so lines from several threads never interleave. USR1 reopens the files.
//! Times are UTC: the container's clock, without a time zone database.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use rgunicorn_workers::clock::{with_http_date, Civil};

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

    fn write_line(&self, line: &str) {
        // Logging must never take the front down: write errors are dropped.
        let _ = match &self.target {
            LogTarget::Off => Ok(()),
            LogTarget::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            LogTarget::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            LogTarget::File(_) => match self.file.lock() {
                Ok(guard) => match guard.as_ref() {
                    Some(mut file) => file.write_all(line.as_bytes()),
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
}

impl Logger {
    pub fn open(
        access: &LogTarget,
        error: &LogTarget,
        upstream_answers: bool,
    ) -> std::io::Result<Logger> {
        Ok(Logger {
            access: Sink::open(access.clone())?,
            error: Sink::open(error.clone())?,
            upstream_answers,
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
        self.error.write_line(&line);
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
        let line = format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
            entry.remote,
            Civil::now().clf_time(),
            escape(entry.request_line),
            entry.status,
            entry.body_bytes,
            escape_or_dash(entry.referer),
            escape_or_dash(entry.user_agent),
        );
        self.access.write_line(&line);
    }
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b == b'"' || b == b'\\' || !(b' '..=b'~').contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn escape_or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        escape(text)
    }
}

/// The `Date` header value, formatted once a second per thread (the workers' cache).
pub fn http_date() -> String {
    with_http_date(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_nginx() {
        assert_eq!(escape("GET /\"x\" HTTP/1.1"), "GET /\\x22x\\x22 HTTP/1.1");
        assert_eq!(escape_or_dash(""), "-");
    }
}

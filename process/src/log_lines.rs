//! Log lines a process could not write (a full disk, a writer that fell behind): dropped,
//! never waited for, and counted. The first failure of an episode is news (one error
//! line); how many lines were lost, and the first reason, is said once the log can be
//! written again. The workers' logs and the front's count their losses this way.

use std::fmt;
use std::io::{self, Write};

/// Lines dropped since the log could last be written, and the first reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lost {
    lines: u64,
    why: Option<String>,
}

impl Lost {
    pub fn add(&mut self, lines: u64, why: &dyn fmt::Display) {
        if lines > 0 {
            self.lines += lines;
            self.why.get_or_insert_with(|| why.to_string());
        }
    }

    /// What to report now that `what` (`access-log`) can be written again, if anything
    /// was lost.
    pub fn note(&self, what: &str) -> Option<String> {
        (self.lines > 0).then(|| {
            format!(
                "{} {what} line(s) could not be written ({}) and were dropped",
                self.lines,
                self.why.as_deref().unwrap_or("unknown error")
            )
        })
    }
}

/// What a write of a log has to tell the error log.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    Nothing,
    /// An episode of failures begins (an error line).
    Failing(String),
    /// The log is written again; how many lines were lost, and why (a warning line).
    Recovered(String),
}

/// A log written a batch of whole lines at a time: what it lost, whether its last write
/// failed (so the next failure is not news), and whether that write stopped inside a line.
#[derive(Debug, Default)]
pub struct LineLog {
    lost: Lost,
    failing: bool,
    /// The last write stopped inside a line: end it before the next one.
    mid_line: bool,
}

impl LineLog {
    /// Lines lost before they reached the log (a writer's queue was full).
    pub fn dropped(&mut self, lines: u64, why: &dyn fmt::Display) {
        self.lost.add(lines, why);
    }

    /// Write `batch` (whole lines) to `out` and flush it. A failure drops the lines not
    /// written whole (counted); the first write that succeeds after losses reports them.
    /// `name` is the log in words (`access log`), `what` in the loss note (`access-log`).
    pub fn write(&mut self, out: &mut dyn Write, batch: &[u8], name: &str, what: &str) -> Report {
        if batch.is_empty() {
            return Report::Nothing;
        }
        let lines = count_lines(batch);
        let mut whole = 0;
        // A line cut short by the last failure is ended first: the newline is not a line.
        let mut error = match self.mid_line {
            true => write_counting(out, b"\n").1,
            false => None,
        };
        if error.is_none() {
            self.mid_line = false;
            let (written, err) = write_counting(out, batch);
            error = err.or_else(|| out.flush().err());
            whole = count_lines(&batch[..written]);
            if written > 0 && batch[written - 1] != b'\n' {
                self.mid_line = true;
                if batch.get(written) == Some(&b'\n') {
                    whole += 1; // all of it but its newline, which the next write adds
                }
            }
        }
        match error {
            Some(err) => {
                self.lost.add(lines - whole, &err);
                if std::mem::replace(&mut self.failing, true) {
                    Report::Nothing
                } else {
                    Report::Failing(format!(
                        "cannot write the {name} ({err}): dropping its lines until it can"
                    ))
                }
            }
            None => {
                self.failing = false;
                match self.lost.note(what) {
                    Some(note) => {
                        self.lost = Lost::default();
                        Report::Recovered(format!("{note}; writing again"))
                    }
                    None => Report::Nothing,
                }
            }
        }
    }

    /// What was lost and never reported (said as the process stops).
    pub fn unreported(&self, what: &str) -> Option<String> {
        self.lost.note(what)
    }
}

/// Write as much of `bytes` as the writer takes: how much, and the error that stopped it.
fn write_counting(out: &mut dyn Write, bytes: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => return (written, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (written, Some(err)),
        }
    }
    (written, None)
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file on a disk that can fill up: takes at most `room` more bytes, then ENOSPC.
    #[derive(Default)]
    struct Disk {
        data: Vec<u8>,
        room: Option<usize>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = match self.room {
                Some(0) => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                Some(room) => buf.len().min(room),
                None => buf.len(),
            };
            self.data.extend_from_slice(&buf[..n]);
            if let Some(room) = self.room.as_mut() {
                *room -= n;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write(log: &mut LineLog, disk: &mut Disk, lines: &[&str]) -> Report {
        let batch: String = lines.iter().map(|l| format!("{l}\n")).collect();
        log.write(disk, batch.as_bytes(), "access log", "access-log")
    }

    #[test]
    fn lines_lost_on_a_full_disk_are_counted_and_reported_once_it_has_room() {
        let (mut log, mut disk) = (LineLog::default(), Disk::default());
        assert_eq!(write(&mut log, &mut disk, &["a1", "a2"]), Report::Nothing);
        // The disk fills in the middle of the second line of a batch.
        disk.room = Some(5);
        let failing = write(&mut log, &mut disk, &["b1", "b2", "b3"]);
        assert_eq!(
            failing,
            Report::Failing(
                "cannot write the access log (No space left on device (os error 28)): \
                 dropping its lines until it can"
                    .into()
            )
        );
        // Still full: no news, more losses; and two lines that never reached the log.
        disk.room = Some(0);
        assert_eq!(write(&mut log, &mut disk, &["c1"]), Report::Nothing);
        log.dropped(2, &"the writer was behind");
        assert!(log.unreported("access-log").is_some());
        // Room again: the next write says what was lost: b3, c1 and the two never
        // queued (b2 is whole but for its newline, which comes before d1).
        disk.room = None;
        assert_eq!(
            write(&mut log, &mut disk, &["d1"]),
            Report::Recovered(
                "4 access-log line(s) could not be written (No space left on device (os error 28)) \
                 and were dropped; writing again"
                    .into()
            )
        );
        assert_eq!(String::from_utf8_lossy(&disk.data), "a1\na2\nb1\nb2\nd1\n");
        assert_eq!(write(&mut log, &mut disk, &["e1"]), Report::Nothing);
        assert_eq!(log.unreported("access-log"), None);
    }
}

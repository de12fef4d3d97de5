//! What is queued for one client, in plaintext: memory first, then (only when the relay
//! lets a response run past [`MEM_CAP`]) an unnamed temp file.
//!
//! The file is nginx's `proxy_temp_path` in miniature: when a client is slower than its
//! answer and other clients' answers wait behind that one on the same upstream connection,
//! the relay ([`super::relay`]) reads the answer on into this queue, so the connection
//! moves on to the others' and the slow client takes its own from here at its pace. A
//! connection that carries only the client's own requests never lets it run past
//! [`super::buffer::BUF_CAP`]: the worker simply waits, and no file is made.
//!
//! Bytes leave in the order they came: once something is in the file, everything after it
//! goes there too, and comes back into memory (16 KiB at a time) as memory runs dry.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::buffer::ByteQueue;

/// Bytes kept in memory before the file takes the rest.
pub const MEM_CAP: usize = 64 * 1024;
/// Bytes gathered in memory before one write to the file.
const FILE_WRITE: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Output {
    mem: ByteQueue,
    spill: Option<Spill>,
    /// The temp file could not be made or written: no more goes there (the relay gives
    /// the client no more room than memory).
    refused: bool,
    /// Why, until it is said in the error log.
    refusal: Option<io::Error>,
}

#[derive(Debug)]
struct Spill {
    file: Option<File>,
    /// The file's bytes not yet read back are `read_at..write_at`.
    read_at: u64,
    write_at: u64,
    /// Bytes after the file's, gathered for the next write (and kept here if the file
    /// was refused).
    tail: ByteQueue,
}

impl Output {
    /// Everything queued, in memory and in the file.
    pub fn len(&self) -> usize {
        self.mem.len()
            + self
                .spill
                .as_ref()
                .map_or(0, |s| (s.write_at - s.read_at) as usize + s.tail.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in memory, first in line (empty while the rest waits in the file: see
    /// [`Output::refill`]).
    pub fn as_slice(&self) -> &[u8] {
        self.mem.as_slice()
    }

    pub fn consume(&mut self, n: usize) {
        self.mem.consume(n);
    }

    /// Whether the temp file is refused (it could not be made or written): the caller
    /// gives no room beyond memory.
    pub fn spill_refused(&self) -> bool {
        self.refused
    }

    /// Why the file was refused, once (for one error line).
    pub fn take_refusal(&mut self) -> Option<io::Error> {
        self.refusal.take()
    }

    pub fn extend(&mut self, data: &[u8]) {
        if self.spill.is_none() && self.mem.len() + data.len() <= MEM_CAP {
            return self.mem.extend(data);
        }
        let refused = self.refused;
        let spill = self.spill.get_or_insert_with(|| Spill {
            file: None,
            read_at: 0,
            write_at: 0,
            tail: ByteQueue::default(),
        });
        spill.tail.extend(data);
        if spill.tail.len() >= FILE_WRITE && !refused {
            if let Err(err) = spill.write_tail() {
                self.refused = true;
                self.refusal = Some(err);
            }
        }
    }

    /// Memory ran dry: bring back what the file holds next (or, once it is read, what
    /// followed it). `Err` when the file cannot be read: the rest of the response is lost.
    pub fn refill(&mut self) -> io::Result<()> {
        if !self.mem.is_empty() {
            return Ok(());
        }
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        match &spill.file {
            Some(file) if spill.read_at < spill.write_at => {
                let want = (spill.write_at - spill.read_at).min(MEM_CAP as u64) as usize;
                let mut reader = At {
                    file,
                    offset: spill.read_at,
                };
                match self.mem.read_from(&mut reader, want)? {
                    (0, _) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the temp file shrank",
                        ))
                    }
                    (n, _) => spill.read_at += n as u64,
                }
            }
            _ => {
                // The file is read back: what followed it comes next, and the file goes.
                self.mem.extend(spill.tail.as_slice());
                self.spill = None;
            }
        }
        Ok(())
    }

    /// Give the memory back (an idle connection keeps none).
    pub fn release(&mut self) {
        if self.spill.is_none() {
            self.mem.release();
        }
    }
}

impl Write for Output {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.extend(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Spill {
    /// Write the gathered bytes to the file (made on first use, unnamed: it goes when
    /// closed, whatever happens to the process).
    fn write_tail(&mut self) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(tempfile::tempfile()?),
        };
        file.write_all_at(self.tail.as_slice(), self.write_at)?;
        self.write_at += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }
}

/// The file read from an offset, as `ByteQueue::read_from` reads a source.
struct At<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything queued, read back through memory as the transport does.
    fn drain(out: &mut Output) -> Vec<u8> {
        let mut got = Vec::new();
        loop {
            out.refill().expect("refill");
            if out.as_slice().is_empty() {
                return got;
            }
            let n = out.as_slice().len().min(10_000);
            got.extend_from_slice(&out.as_slice()[..n]);
            out.consume(n);
        }
    }

    #[test]
    fn bytes_past_memory_go_through_a_file_and_come_back_in_order() {
        let mut out = Output::default();
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let piece = format!("{i:08}|").repeat(50);
            out.extend(piece.as_bytes());
            expected.extend_from_slice(piece.as_bytes());
        }
        assert_eq!(out.len(), expected.len());
        assert!(out.spill.as_ref().is_some_and(|s| s.file.is_some()));
        // Part read back, then more queued behind the file's bytes.
        let mut got = Vec::new();
        for _ in 0..5 {
            out.refill().expect("refill");
            got.extend_from_slice(out.as_slice());
            let n = out.as_slice().len();
            out.consume(n);
        }
        out.extend(b"the end");
        expected.extend_from_slice(b"the end");
        got.extend(drain(&mut out));
        assert_eq!(got, expected);
        assert!(out.is_empty() && out.spill.is_none());
    }

    #[test]
    fn small_output_stays_in_memory() {
        let mut out = Output::default();
        out.extend(&[b'a'; MEM_CAP]);
        assert!(out.spill.is_none());
        out.extend(b"b");
        assert!(out.spill.is_some(), "past memory, into the spill");
        assert_eq!(drain(&mut out).len(), MEM_CAP + 1);
    }
}

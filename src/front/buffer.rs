//! A byte queue for the front's sockets: appended at the back, consumed from the front
//! without moving what is left, read into without zeroing memory each time (its storage
//! is initialised once as it grows, then reused), and released when a connection idles.

use std::io::{self, Read};

/// Each streaming buffer of a connection holds at most about this much (the memory
/// bound per connection, each way).
pub const BUF_CAP: usize = 32 * 1024;
/// Bytes read or written in one go at most.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct ByteQueue {
    /// Initialised storage; the queued bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ByteQueue {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drop `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Give the memory back (an idle connection keeps none).
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.clear();
        }
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.room(data.len())[..data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Read once from `source` while fewer than `max` bytes are queued. Returns the bytes
    /// read and how many were asked for (a short read means the source is drained).
    pub fn read_from(&mut self, source: &mut impl Read, max: usize) -> io::Result<(usize, usize)> {
        let want = max.saturating_sub(self.len()).min(CHUNK);
        if want == 0 {
            return Ok((0, 0));
        }
        let n = source.read(&mut self.room(want)[..want])?;
        self.end += n;
        Ok((n, want))
    }

    /// At least `n` bytes of writable space after the queued bytes.
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.end < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < n {
                let size = (self.end + n).max(self.buf.len() * 2).max(1024);
                self.buf.resize(size, 0);
            }
        }
        &mut self.buf[self.end..]
    }
}

impl io::Write for ByteQueue {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.extend(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_consumes_reads_and_compacts() {
        let mut q = ByteQueue::default();
        q.extend(b"hello ");
        let (n, want) = q
            .read_from(&mut &b"world"[..], 100)
            .expect("read from a slice");
        assert_eq!((n, want), (5, 94));
        assert_eq!(q.as_slice(), b"hello world");
        q.consume(6);
        assert_eq!(q.as_slice(), b"world");
        // Appending past the storage moves the queued bytes to the front first.
        q.extend(&[b'x'; 5000]);
        assert_eq!(q.len(), 5005);
        assert_eq!(&q.as_slice()[..6], b"worldx");
        assert_eq!(q.read_from(&mut &b"y"[..], 5005).expect("full"), (0, 0));
        q.consume(5005);
        assert!(q.is_empty());
        q.release();
        assert_eq!(q.buf.capacity(), 0);
    }
}

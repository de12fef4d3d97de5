//! The transport layer of a client connection: socket ↔ rustls ↔ plaintext queues.
//!
//! Laid out as rustls's `tlsserver-mio` example: [`TlsTransport::receive`] reads TLS
//! records and decrypts them into `input`, [`TlsTransport::send`] encrypts `output` and
//! writes the records. Both stop at `WouldBlock` and remember it ([`Readiness`]), so the
//! next syscall waits for the next event. What the plaintext means is the HTTP/1 layer's
//! business ([`super::http1`]).

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::{ServerConfig, ServerConnection};

use super::buffer::{ByteQueue, BUF_CAP};
use super::context::Readiness;
use super::output::Output;
use rgunicorn_metrics::record::Handshake;

/// Largest plaintext rustls buffers for us, each way (memory bound per connection).
pub const TLS_BUF: usize = 32 * 1024;

/// The connection cannot go on; the text, if any, says why (for an info line).
#[derive(Debug)]
pub struct Broken(pub Option<String>);

pub struct TlsTransport {
    sock: TcpStream,
    tls: ServerConnection,
    /// Plaintext from the client not yet consumed.
    pub input: ByteQueue,
    /// Plaintext for the client not yet taken by rustls.
    pub output: Output,
    ready: Readiness,
    /// The client ended its side (close_notify or EOF).
    pub peer_done: bool,
    /// Last time writing to the client was not blocked.
    pub last_write: Instant,
    /// The handshake's end was counted (`super::metrics`).
    handshake_counted: bool,
}

impl TlsTransport {
    pub fn new(
        mut sock: TcpStream,
        config: Arc<ServerConfig>,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> io::Result<TlsTransport> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(TLS_BUF));
        // TCP_NODELAY comes from the listening socket (`super::listen`).
        // Registered once for both directions: edge-triggered, so a writable event comes
        // only after a refused write, and no epoll_ctl is needed as the state changes.
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(TlsTransport {
            sock,
            tls,
            input: ByteQueue::default(),
            output: Output::default(),
            ready: Readiness::fresh(),
            peer_done: false,
            last_write: now,
            handshake_counted: false,
        })
    }

    pub fn note(&mut self, event: &mio::event::Event) {
        self.ready.note(event);
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Count the handshake once it is over, full or resumed.
    fn count_handshake(&mut self) {
        if self.handshake_counted || self.tls.is_handshaking() {
            return;
        }
        self.handshake_counted = true;
        super::metrics::handshake(match self.tls.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => Handshake::Resumed,
            _ => Handshake::Full,
        });
    }

    /// Whether to read the socket now: the state wants plaintext (room under `cap`, the
    /// client not done) and poll said bytes may be there. The socket is registered once
    /// for both directions (edge-triggered); this and [`TlsTransport::wants_write`] are
    /// the interest, derived from state.
    fn wants_read(&self, cap: usize) -> bool {
        self.input.len() < cap && !self.peer_done && self.ready.readable
    }

    /// Whether to write the socket now: rustls holds records and the last write was not
    /// refused.
    fn wants_write(&self) -> bool {
        self.tls.wants_write() && !self.ready.write_blocked
    }

    /// Something still has to reach the client.
    pub fn has_pending_output(&self) -> bool {
        !self.output.is_empty() || self.tls.wants_write()
    }

    /// The client is not keeping up with what is said to it: its socket refused a write,
    /// or a full buffer of its output waits.
    pub fn backed_up(&self) -> bool {
        self.ready.write_blocked || self.output.len() >= BUF_CAP
    }

    /// Decrypt into `input` until it holds `cap` bytes, the socket is drained or the
    /// client ended its side. Returns whether anything moved.
    pub fn receive(&mut self, cap: usize) -> Result<bool, Broken> {
        let mut progress = false;
        loop {
            while self.input.len() < cap && !self.peer_done {
                let mut reader = self.tls.reader();
                match reader.fill_buf() {
                    Ok([]) => self.peer_done = true,
                    Ok(chunk) => {
                        let n = chunk.len().min(cap - self.input.len());
                        self.input.extend(&chunk[..n]);
                        reader.consume(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // EOF without close_notify: the end of the client's side all the same.
                    Err(_) => self.peer_done = true,
                }
            }
            if !self.wants_read(cap) {
                return Ok(progress);
            }
            let mut probe = ShortRead {
                sock: &mut self.sock,
                drained: false,
            };
            let read = self.tls.read_tls(&mut probe);
            if probe.drained && !self.ready.read_closed {
                self.ready.readable = false;
            }
            match read {
                Ok(0) => {
                    self.peer_done = true;
                    progress = true;
                }
                Ok(n) => {
                    progress = true;
                    super::metrics::received(n);
                    if let Err(err) = self.tls.process_new_packets() {
                        if !self.handshake_counted && self.tls.is_handshaking() {
                            self.handshake_counted = true;
                            super::metrics::handshake(Handshake::Failed);
                        }
                        // Flush the alert rustls queued, once, then give up.
                        let _ = self.tls.write_tls(&mut self.sock);
                        return Err(Broken(Some(format!("TLS error: {err}"))));
                    }
                    self.count_handshake();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready.readable = false;
                    return Ok(progress);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A client that resets is gone, as one that closes (nginx says so only at
                // its `info` level, off by default): no line for each.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(Broken(None)),
                Err(err) => return Err(Broken(Some(format!("reading failed: {err}")))),
            }
        }
    }

    /// Encrypt `output` and write the records, until both are out or the socket refuses
    /// more (rustls takes a buffer's worth at a time: the rest follows in the same call,
    /// as no event may come to ask for it). Returns whether anything moved.
    pub fn send(&mut self, now: Instant) -> Result<bool, Broken> {
        let mut progress = false;
        loop {
            let mut queued = false;
            loop {
                if let Err(err) = self.output.refill() {
                    return Err(Broken(Some(format!(
                        "the temp file holding its response could not be read: {err}"
                    ))));
                }
                if self.output.as_slice().is_empty() {
                    break;
                }
                match self.tls.writer().write(self.output.as_slice()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.output.consume(n);
                        queued = true;
                        progress = true;
                    }
                }
            }
            while self.wants_write() {
                match self.tls.write_tls(&mut self.sock) {
                    Ok(n) => {
                        progress = true;
                        super::metrics::sent(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.ready.write_blocked = true
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(Broken(None)),
                }
            }
            if self.ready.write_blocked || !queued {
                break;
            }
        }
        if progress || !self.has_pending_output() {
            self.last_write = now;
        }
        if !self.tls.wants_write() && self.output.is_empty() && self.input.is_empty() {
            self.input.release();
            self.output.release();
        }
        Ok(progress)
    }

    /// Everything is said: close_notify, then shut the write side (nginx's lingering
    /// close follows: [`TlsTransport::discard`] until EOF).
    pub fn finish(&mut self) {
        self.tls.send_close_notify();
        let _ = self.tls.write_tls(&mut self.sock);
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// Read and drop what the client still sends, so it reads our last response instead
    /// of a reset. `Err` at its EOF.
    pub fn discard(&mut self) -> Result<bool, Broken> {
        let mut scratch = [0u8; 4096];
        let mut progress = false;
        while self.ready.readable {
            match self.sock.read(&mut scratch) {
                Ok(0) => return Err(Broken(None)),
                Ok(n) => {
                    self.ready.after_read(n, scratch.len());
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Broken(None)),
            }
        }
        Ok(progress)
    }
}

/// The client socket as rustls reads it, noting a read that returned less than asked:
/// the socket is drained, and reading again before the next event would only say
/// `WouldBlock`.
struct ShortRead<'a> {
    sock: &'a mut TcpStream,
    drained: bool,
}

impl Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if n < buf.len() {
            self.drained = true;
        }
        Ok(n)
    }
}

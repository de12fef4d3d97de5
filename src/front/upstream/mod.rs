//! One connection to the workers (unix or TCP), an entry of the event loop with its own
//! token: the requests it carries in order ([`InFlight`], possibly pipelined, possibly
//! for several clients), the bytes queued for the worker, and the response being read,
//! handed to whoever asked through a [`ResponseSink`]. It is registered once, when it is
//! made, and stays registered while it idles in the loop's pool, so a worker closing it
//! shows as an event before anyone sends on it. Which connection a request takes, and
//! what happens when one fails, is the relay's business ([`super::relay`]). Responses are
//! parsed and their bodies read by `rgunicorn_http`, the workers' own code.

mod socket;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::Instant;

use mio::{Interest, Registry, Token};
use rgunicorn_http::{parse_response_head, resend, BodyDecoder, Framing, ParseError, ResponseHead};

use super::buffer::{ByteQueue, BUF_CAP};
use super::context::{Key, Readiness};
use super::settings::UpstreamAddr;
use socket::Socket;

/// Requests in flight on one connection at most.
pub const MAX_DEPTH: usize = 32;

/// One request sent (or being sent) on the connection.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    pub client: Key,
    /// The exchange's id within the loop (see [`crate::front::http1::Exchange::id`]).
    pub id: u64,
    pub head_request: bool,
    /// The whole request body has been queued: others may follow it.
    pub body_done: bool,
    /// Its response head has been handed on.
    pub answered: bool,
    /// The worker may hand it back unstarted (`rgunicorn_http::resend`).
    pub offered: bool,
}

/// The requests a connection took in the pass it started them, and how their answers came.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch {
    pub requests: usize,
    /// Reads after which an answer began (the further reads of a large body do not
    /// count: they say nothing of how the worker answers a batch).
    pub reads: usize,
    /// Requests of other clients the pass may add.
    pub limit: usize,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A non-blocking connect is on.
    Connecting {
        since: Instant,
    },
    Open,
    /// In the loop's pool, waiting for a request.
    Idle {
        since: Instant,
    },
}

/// The response being read for the first request in flight.
enum Reading {
    Head,
    /// Its body, read with the one decoder requests are read with too.
    Body(BodyDecoder),
}

/// Why a response cannot be passed on (the client gets 502).
#[derive(Debug, thiserror::Error)]
pub enum BadResponse {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("unexpected 101 Switching Protocols")]
    Upgrade,
}

/// Who takes a response: the client exchange that asked, or nobody (it went away).
pub trait ResponseSink {
    /// Body bytes that can be taken now (0: the client's buffer is full).
    fn room(&self) -> usize;
    fn head(&mut self, head: &ResponseHead<'_>);
    /// At most `room()` bytes.
    fn data(&mut self, data: &[u8]);
    fn end(&mut self);
    /// The worker handed the request back unstarted: it is to be sent again elsewhere.
    fn handed_back(&mut self);
}

/// A response nobody waits for any more: read and dropped.
pub struct Discard;

impl ResponseSink for Discard {
    fn room(&self) -> usize {
        usize::MAX
    }
    fn head(&mut self, _: &ResponseHead<'_>) {}
    fn data(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
    fn handed_back(&mut self) {}
}

/// Whether `head` is a worker handing its request back (`rgunicorn_http::resend`): only
/// ever looked at for a request the front offered.
fn handed_back(head: &ResponseHead<'_>) -> bool {
    head.status == 503
        && head.fields.get(resend::OFFER_FIELD).is_some()
        && matches!(head.framing, Framing::Length(0) | Framing::NoBody)
}

/// What one call of [`Upstream::deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The first request's response is complete and was popped.
    Ended,
    /// The sink is full for now.
    Blocked,
    /// Everything buffered was handed on; more must be read.
    NeedBytes,
}

pub struct Upstream {
    stream: Socket,
    pub phase: Phase,
    /// Bytes for the worker not yet written.
    pub out: ByteQueue,
    inbuf: ByteQueue,
    pub inflight: VecDeque<InFlight>,
    reading: Reading,
    ready: Readiness,
    /// No request may be added: the worker said it closes after the response being
    /// read (`Connection: close`), or the connection failed.
    pub closing: bool,
    /// The worker closed its side (read returned 0).
    pub eof: bool,
    /// Last time bytes moved either way.
    pub last_progress: Instant,
    pub batch: Batch,
    /// Reads that brought bytes, and which of them an answer last began after.
    reads: u64,
    head_read: u64,
}

impl Upstream {
    /// Start a non-blocking connect to `addr` and register the socket under `token`.
    pub fn connect(
        addr: &UpstreamAddr,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> io::Result<Upstream> {
        let mut stream = Socket::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Upstream {
            stream,
            phase: Phase::Connecting { since: now },
            out: ByteQueue::default(),
            inbuf: ByteQueue::default(),
            inflight: VecDeque::new(),
            reading: Reading::Head,
            ready: Readiness::fresh(),
            closing: false,
            eof: false,
            last_progress: now,
            batch: Batch::default(),
            reads: 0,
            head_read: 0,
        })
    }

    pub fn note(&mut self, event: &mio::event::Event) {
        self.ready.note(event);
    }

    /// The worker has begun to close it (or bytes arrived that nobody asked for).
    pub fn stirred(&self) -> bool {
        self.ready.readable || self.ready.read_closed
    }

    /// Whether another request may be queued behind the ones in flight.
    pub fn accepts(&self) -> bool {
        !self.closing
            && !self.eof
            && !matches!(self.phase, Phase::Idle { .. })
            && self.inflight.len() < MAX_DEPTH
            && self.inflight.back().is_none_or(|last| last.body_done)
    }

    /// Into the pool: nothing in flight, buffers given back.
    pub fn park(&mut self, now: Instant) {
        self.phase = Phase::Idle { since: now };
        self.out.release();
        self.inbuf.release();
    }

    /// Out of the pool, for a new request.
    pub fn unpark(&mut self, now: Instant) {
        self.phase = Phase::Open;
        self.last_progress = now;
    }

    /// Whether a started connect has finished; `Err` when it failed.
    pub fn check_connected(&mut self) -> io::Result<bool> {
        let Phase::Connecting { .. } = self.phase else {
            return Ok(true);
        };
        let done = self.stream.connected()?;
        if done {
            self.phase = Phase::Open;
        }
        Ok(done)
    }

    /// Write what is queued. Returns whether anything moved.
    pub fn send(&mut self, now: Instant) -> io::Result<bool> {
        let mut progress = false;
        while self.wants_write() {
            match self.stream.write(self.out.as_slice()) {
                Ok(n) => {
                    self.out.consume(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.write_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if progress {
            self.last_progress = now;
        }
        Ok(progress)
    }

    /// Read while the socket may have bytes and the buffer has room. A read of 0 sets
    /// `eof`; what was read before it is still delivered.
    pub fn receive(&mut self, now: Instant) -> io::Result<bool> {
        let mut progress = false;
        while self.wants_read() {
            match self.inbuf.read_from(&mut self.stream, BUF_CAP) {
                Ok((0, want)) if want > 0 => {
                    self.eof = true;
                    progress = true;
                }
                Ok((n, want)) => {
                    self.ready.after_read(n, want);
                    if n > 0 {
                        progress = true;
                        self.reads += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if progress {
            self.last_progress = now;
        }
        Ok(progress)
    }

    /// A write failed: the worker stopped reading (it answered early, or closed). Take
    /// nothing more, and read what it said, or its EOF.
    pub fn broken_write(&mut self) {
        self.closing = true;
        self.out.clear();
        self.ready.readable = true;
    }

    /// Whether to read the socket now: it may have bytes and the buffer has room. The
    /// socket is registered once for both directions (edge-triggered); this and
    /// [`Upstream::wants_write`] are the interest, derived from state.
    pub fn wants_read(&self) -> bool {
        self.ready.readable && !self.eof && self.inbuf.len() < BUF_CAP
    }

    /// Whether to write the socket now: bytes are queued and the last write was not
    /// refused.
    fn wants_write(&self) -> bool {
        !self.out.is_empty() && !self.ready.write_blocked
    }

    /// Whether response bytes wait in the buffer (for a sink that had no room).
    pub fn has_buffered(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// The buffer is full because the client is not taking: not the worker's fault.
    pub fn held_by_client(&self) -> bool {
        self.inbuf.len() >= BUF_CAP
    }

    /// Hand what is buffered of the first response in flight to `sink`: its head, then
    /// its body as slices of the buffer (no copy on the way).
    pub fn deliver(&mut self, sink: &mut dyn ResponseSink) -> Result<Delivered, BadResponse> {
        let Some(item) = self.inflight.front_mut() else {
            return Ok(Delivered::NeedBytes);
        };
        loop {
            match &mut self.reading {
                Reading::Head => {
                    let Some(head) = parse_response_head(self.inbuf.as_slice(), item.head_request)?
                    else {
                        return Ok(Delivered::NeedBytes);
                    };
                    let (len, framing, keep_alive) = (head.head_len, head.framing, head.keep_alive);
                    if head.status == 101 {
                        // Nothing the front forwards asks to switch protocols.
                        return Err(BadResponse::Upgrade);
                    }
                    if item.offered && handed_back(&head) {
                        self.closing |= !keep_alive;
                        self.inbuf.consume(len);
                        sink.handed_back();
                        self.inflight.pop_front();
                        return Ok(Delivered::Ended);
                    }
                    let interim = (100..200).contains(&head.status);
                    if !interim {
                        item.answered = true;
                        self.closing |= !keep_alive;
                        if self.head_read != self.reads {
                            self.head_read = self.reads;
                            self.batch.reads += 1;
                        }
                        sink.head(&head);
                    }
                    self.inbuf.consume(len);
                    if interim {
                        // 100 Continue and friends: the front answered its own client.
                        continue;
                    }
                    if let Framing::NoBody | Framing::Length(0) = framing {
                        return Ok(self.end(sink));
                    }
                    self.reading = Reading::Body(BodyDecoder::response(framing));
                }
                Reading::Body(body) if self.inbuf.is_empty() => {
                    if self.eof && body.close() {
                        return Ok(self.end(sink));
                    }
                    return Ok(Delivered::NeedBytes);
                }
                Reading::Body(_) if sink.room() == 0 => return Ok(Delivered::Blocked),
                Reading::Body(body) => {
                    let step = body.next_capped(self.inbuf.as_slice(), sink.room())?;
                    if !step.data.is_empty() {
                        sink.data(step.data);
                    }
                    let (consumed, done) = (step.consumed, step.done);
                    self.inbuf.consume(consumed);
                    if done {
                        return Ok(self.end(sink));
                    }
                    if consumed == 0 {
                        return Ok(Delivered::NeedBytes);
                    }
                }
            }
        }
    }

    fn end(&mut self, sink: &mut dyn ResponseSink) -> Delivered {
        sink.end();
        self.inflight.pop_front();
        self.reading = Reading::Head;
        Delivered::Ended
    }

    /// Whether the connection can serve another request once this one is answered.
    pub fn reusable(&self) -> bool {
        !self.closing && !self.eof && self.inbuf.is_empty() && self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        heads: Vec<u16>,
        body: Vec<u8>,
        ends: usize,
        room: usize,
        handed_back: usize,
    }

    impl ResponseSink for Recorder {
        fn room(&self) -> usize {
            self.room
        }
        fn head(&mut self, head: &ResponseHead<'_>) {
            self.heads.push(head.status);
        }
        fn data(&mut self, data: &[u8]) {
            assert!(data.len() <= self.room);
            self.body.extend_from_slice(data);
        }
        fn end(&mut self) {
            self.ends += 1;
        }
        fn handed_back(&mut self) {
            self.handed_back += 1;
        }
    }

    fn upstream(items: usize) -> Upstream {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let mut up = Upstream {
            stream: Socket::Unix(mio::net::UnixStream::from_std(a)),
            phase: Phase::Open,
            out: ByteQueue::default(),
            inbuf: ByteQueue::default(),
            inflight: VecDeque::new(),
            reading: Reading::Head,
            ready: Readiness::default(),
            closing: false,
            eof: false,
            last_progress: Instant::now(),
            batch: Batch::default(),
            reads: 0,
            head_read: 0,
        };
        for id in 0..items as u64 {
            up.inflight.push_back(InFlight {
                client: Key(0),
                id,
                head_request: false,
                body_done: true,
                answered: false,
                offered: false,
            });
        }
        up
    }

    #[test]
    fn a_worker_hands_back_only_what_was_offered() {
        let mut up = upstream(2);
        up.inflight[0].offered = true;
        for _ in 0..2 {
            up.inbuf.extend(rgunicorn_http::resend::HANDED_BACK);
        }
        let mut sink = Recorder {
            room: 64,
            ..Recorder::default()
        };
        assert_eq!(up.deliver(&mut sink).expect("valid"), Delivered::Ended);
        assert_eq!((sink.handed_back, sink.heads.len()), (1, 0));
        // Not offered: the same answer is an answer, passed on.
        assert_eq!(up.deliver(&mut sink).expect("valid"), Delivered::Ended);
        assert_eq!((sink.handed_back, sink.heads.as_slice()), (1, &[503][..]));
        assert!(up.inflight.is_empty() && up.reusable());
    }

    #[test]
    fn pipelined_responses_are_delivered_one_by_one_within_the_sink_room() {
        let mut up = upstream(2);
        up.inbuf.extend(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!");
        let mut sink = Recorder {
            room: 2,
            ..Recorder::default()
        };
        let mut steps = Vec::new();
        for _ in 0..10 {
            let step = up.deliver(&mut sink).expect("valid");
            steps.push(step);
            if up.inflight.is_empty() {
                break;
            }
        }
        assert_eq!(sink.heads, [200, 404]);
        assert_eq!(sink.body, b"hellono!");
        assert_eq!(sink.ends, 2);
        assert_eq!(steps.iter().filter(|s| **s == Delivered::Ended).count(), 2);
        assert!(up.closing && !up.reusable());
    }

    #[test]
    fn a_full_sink_blocks_and_an_until_close_body_ends_at_eof() {
        let mut up = upstream(1);
        up.inbuf.extend(b"HTTP/1.0 200 OK\r\n\r\nabc");
        let mut sink = Recorder::default();
        assert_eq!(up.deliver(&mut sink).expect("valid"), Delivered::Blocked);
        sink.room = 100;
        assert_eq!(up.deliver(&mut sink).expect("valid"), Delivered::NeedBytes);
        up.eof = true;
        assert_eq!(up.deliver(&mut sink).expect("valid"), Delivered::Ended);
        assert_eq!((sink.body.as_slice(), sink.ends), (&b"abc"[..], 1));
    }
}

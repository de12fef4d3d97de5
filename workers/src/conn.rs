//! One client connection's state machine: read and parse a request head, receive its
//! body, hand it to the app (inline or on the pool), write the answer, then wait for the
//! next request or close. The event loop ([`crate::worker`]) owns the sockets and calls
//! [`Conn::drive`] whenever something about this connection changed.
//!
//! Readiness is cached per direction (edge-triggered poll): a read that fills less than
//! the buffer, or any `WouldBlock`, clears it until the next event.

use std::fs::File;
use std::io::{self, Cursor, ErrorKind, Read, Seek, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::app::{App, Environ, Input, Mode};
use crate::config::WorkerConfig;
use crate::environ::{self, ConnInfo};
use crate::http::{ChunkedDecoder, DecodeProgress, ParseError, Version};
use crate::log::AccessLog;
use crate::pool::{Job, Pool};
use crate::respond::{
    call_app, error_response, push_chunk, write_response, Answer, BodySource, Exchange, Framing,
    ResponseContext,
};
use crate::stream::Stream;

/// Stop parsing pipelined requests while this much response is still unsent.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection keeps draining what the client still sends, so the
/// client reads our final response instead of a reset.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// What the loop should do with the connection after driving it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Close,
}

enum Step {
    /// The state changed: look again.
    Again,
    /// Nothing to do until the socket, the app pool or the clock says so.
    Wait,
    Close,
}

/// What the worker lends a connection while it is driven.
pub struct Cx<'a> {
    pub key: usize,
    pub app: &'a Arc<dyn App>,
    pub mode: Mode,
    pub pool: Option<&'a Pool>,
    pub cfg: &'a WorkerConfig,
    pub access: Option<&'a AccessLog>,
    pub scratch: &'a mut [u8],
    /// The worker is retiring: answer what is in flight with `Connection: close`.
    pub stopping: bool,
    /// Requests this worker has started; drives max_requests.
    pub requests: &'a mut u64,
}

/// What a parsed request head leaves behind once its bytes are drained from the input.
struct Request {
    environ: Environ,
    version: Version,
    is_head: bool,
    keep_alive: bool,
    body: Framing,
    expect_continue: bool,
}

/// A request whose body is still arriving.
struct Pending {
    environ: Environ,
    ctx: ResponseContext,
    started: Instant,
    framing: BodyFraming,
    sink: Sink,
    received: u64,
}

enum BodyFraming {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// Where a body goes: memory up to body_buffer_size, then an unlinked temp file.
enum Sink {
    Memory(Vec<u8>),
    File(File),
}

enum State {
    /// Waiting for a request head; `started` is when its first byte came.
    Head { started: Option<Instant> },
    /// Waiting for the rest of a request body.
    Body(Box<Pending>),
    /// Waiting for an app thread's answer.
    App,
    /// Waiting to send more of a streamed body.
    Stream {
        source: BodySource,
        framing: Framing,
        remaining: Option<u64>,
        keep_alive: bool,
    },
    /// Waiting for the last response to be flushed before closing.
    Closing,
    /// Write side shut; reading and discarding until EOF or the deadline.
    Lingering { until: Instant },
}

pub struct Conn {
    pub stream: Stream,
    info: ConnInfo,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    state: State,
    pub readable: bool,
    pub writable: bool,
    served: u64,
    /// Last time bytes moved either way (or the connection was accepted).
    last_active: Instant,
}

impl Conn {
    pub fn new(stream: Stream, info: ConnInfo) -> Conn {
        Conn {
            stream,
            info,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            state: State::Head { started: None },
            readable: false,
            writable: false,
            served: 0,
            last_active: Instant::now(),
        }
    }

    /// An idle keep-alive connection: closed at once when the worker stops.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { started: None })
            && self.inbuf.is_empty()
            && self.out_pos >= self.out.len()
    }

    /// Make all the progress possible now.
    pub fn drive(&mut self, cx: &mut Cx) -> Outcome {
        loop {
            let step = match self.state {
                State::Head { .. } => self.on_head(cx),
                State::Body(_) => self.on_body(cx),
                State::App => Step::Wait,
                State::Stream { .. } => self.on_stream(cx),
                State::Closing => self.on_closing(),
                State::Lingering { .. } => self.on_linger(cx),
            };
            match step {
                Step::Again => continue,
                Step::Close => return Outcome::Close,
                Step::Wait => {
                    return match self.flush() {
                        Ok(()) => Outcome::Open,
                        Err(_) => Outcome::Close,
                    }
                }
            }
        }
    }

    /// An app thread's answer arrived.
    pub fn answered(&mut self, out: Vec<u8>, answer: Answer, cx: &mut Cx) -> Outcome {
        if !matches!(self.state, State::App) {
            // Too late: the client was already answered 504 (`gateway_timeout`).
            return self.drive(cx);
        }
        if self.out_pos >= self.out.len() {
            self.out = out;
            self.out_pos = 0;
        } else {
            self.out.extend_from_slice(&out);
        }
        self.after_answer(answer);
        self.drive(cx)
    }

    /// The app has held this connection's request longer than `request_timeout`: answer
    /// 504 and close. The 504 is queued behind any earlier pipelined answer not yet sent,
    /// so the client reads its responses in order; the app's late answer is dropped.
    pub fn gateway_timeout(&mut self, cx: &mut Cx) -> Outcome {
        self.fail(504, cx);
        self.drive(cx)
    }

    /// The clock ticked: enforce the header, body, idle and write deadlines.
    pub fn check_deadline(&mut self, now: Instant, cx: &mut Cx) -> Outcome {
        let cfg = cx.cfg;
        let idle = now.saturating_duration_since(self.last_active);
        match &self.state {
            State::Head { started: Some(t) }
                if now.saturating_duration_since(*t) >= cfg.header_timeout =>
            {
                self.fail(408, cx);
                self.drive(cx)
            }
            State::Head { started: None } if self.out_pos >= self.out.len() => {
                let limit = if self.served == 0 {
                    cfg.header_timeout
                } else {
                    cfg.keepalive
                };
                if idle >= limit {
                    Outcome::Close
                } else {
                    Outcome::Open
                }
            }
            State::Body(p) => {
                let elapsed = now.saturating_duration_since(p.started);
                let grace = std::time::Duration::from_secs(5);
                let wanted =
                    (elapsed.saturating_sub(grace).as_secs_f64() * cfg.min_body_rate as f64) as u64;
                if elapsed > grace && p.received < wanted || idle >= cfg.header_timeout {
                    crate::log_info!("body too slow from {}: closing", self.peer_name());
                    self.fail(408, cx);
                    self.drive(cx)
                } else {
                    Outcome::Open
                }
            }
            State::Lingering { until } if now >= *until => Outcome::Close,
            State::App => Outcome::Open,
            // Unsent output with no progress: the client stopped reading.
            _ if self.out_pos < self.out.len() && idle >= cfg.header_timeout.max(cfg.timeout) => {
                Outcome::Close
            }
            _ => Outcome::Open,
        }
    }

    fn peer_name(&self) -> String {
        match self.info.peer {
            Some(p) => p.to_string(),
            None => "unix socket".into(),
        }
    }

    fn on_head(&mut self, cx: &mut Cx) -> Step {
        if !self.inbuf.is_empty() {
            match rgunicorn_http::parse_request_head(&self.inbuf, &cx.cfg.limits) {
                Ok(Some(head)) => {
                    // The head borrows the input: take what the request needs, then drain.
                    let request = Request {
                        environ: environ::build(&head, &self.info, &cx.cfg.forwarded_allow),
                        version: head.version,
                        is_head: head.is_head(),
                        keep_alive: head.keep_alive,
                        body: head.body,
                        expect_continue: head.expect_continue,
                    };
                    self.inbuf.drain(..head.head_len);
                    return self.start_request(request, cx);
                }
                Ok(None) => {
                    if let State::Head {
                        started: started @ None,
                    } = &mut self.state
                    {
                        *started = Some(Instant::now());
                    }
                }
                Err(err) => return self.reject(err, cx),
            }
        }
        if self.out.len() - self.out_pos > OUT_HIGH_WATER {
            // The client is not reading its answers: stop taking its requests.
            return Step::Wait;
        }
        self.read_more(cx)
    }

    fn read_more(&mut self, cx: &mut Cx) -> Step {
        if !self.readable {
            return Step::Wait;
        }
        loop {
            match self.stream.read(cx.scratch) {
                Ok(0) if self.out_pos < self.out.len() => {
                    // The client half-closed after its last request: deliver the answers first.
                    self.state = State::Closing;
                    return Step::Again;
                }
                Ok(0) => return Step::Close,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&cx.scratch[..n]);
                    self.last_active = Instant::now();
                    if n < cx.scratch.len() {
                        // A short read drained the socket; new data brings a new event.
                        self.readable = false;
                    }
                    return Step::Again;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Step::Wait;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            }
        }
    }

    fn reject(&mut self, err: ParseError, cx: &Cx) -> Step {
        crate::log_debug!("bad request from {}: {err}", self.peer_name());
        self.fail(err.status(), cx);
        Step::Again
    }

    /// Answer an error status and close; nothing after it on this connection is read.
    fn fail(&mut self, status: u16, cx: &Cx) {
        self.inbuf.clear();
        let ctx = ResponseContext {
            version: Version::Http11,
            is_head: false,
            keep_alive: false,
        };
        let environ = Environ::default();
        let ex = Exchange {
            environ: &environ,
            ctx,
            server: &cx.cfg.server_software,
            started: Instant::now(),
            access: None,
        };
        write_response(error_response(status), &ex, &mut self.out);
        self.state = State::Closing;
    }

    fn start_request(&mut self, head: Request, cx: &mut Cx) -> Step {
        let started = Instant::now();
        let retiring =
            cx.stopping || (cx.cfg.max_requests > 0 && *cx.requests + 1 >= cx.cfg.max_requests);
        let ctx = ResponseContext {
            version: head.version,
            is_head: head.is_head,
            keep_alive: head.keep_alive && !cx.cfg.keepalive.is_zero() && !retiring,
        };
        let environ = head.environ;
        let framing = match head.body {
            Framing::NoBody | Framing::UntilClose | Framing::Length(0) => {
                return self.dispatch(environ, Input::Empty, ctx, started, cx)
            }
            Framing::Length(n) => {
                if cx.cfg.limit_request_body > 0 && n > cx.cfg.limit_request_body {
                    self.fail(413, cx);
                    return Step::Again;
                }
                BodyFraming::Length { remaining: n }
            }
            // A chunk whose size takes the body past limit_request_body is refused (413)
            // as soon as its size line arrives.
            Framing::Chunked => BodyFraming::Chunked(
                ChunkedDecoder::with_limits(&cx.cfg.limits)
                    .with_max_body(cx.cfg.limit_request_body),
            ),
        };
        if head.expect_continue && head.version == Version::Http11 && self.inbuf.is_empty() {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.state = State::Body(Box::new(Pending {
            environ,
            ctx,
            started,
            framing,
            sink: Sink::Memory(Vec::new()),
            received: 0,
        }));
        Step::Again
    }

    fn on_body(&mut self, cx: &mut Cx) -> Step {
        let State::Body(pending) = &mut self.state else {
            return Step::Wait;
        };
        let limit = cx.cfg.limit_request_body;
        let spill_at = cx.cfg.body_buffer_size;
        let done = match &mut pending.framing {
            BodyFraming::Length { remaining } => {
                let take = self
                    .inbuf
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                if take > 0 {
                    if let Err(err) = pending.sink.write(&self.inbuf[..take], spill_at) {
                        crate::log_error!("cannot buffer request body: {err}");
                        self.fail(500, cx);
                        return Step::Again;
                    }
                    self.inbuf.drain(..take);
                    *remaining -= take as u64;
                    pending.received += take as u64;
                }
                *remaining == 0
            }
            BodyFraming::Chunked(decoder) => {
                let mut decoded = Vec::new();
                match decoder.decode(&self.inbuf, &mut decoded) {
                    Ok((consumed, progress)) => {
                        self.inbuf.drain(..consumed);
                        pending.received += decoded.len() as u64;
                        if limit > 0 && pending.received > limit {
                            self.fail(413, cx);
                            return Step::Again;
                        }
                        if let Err(err) = pending.sink.write(&decoded, spill_at) {
                            crate::log_error!("cannot buffer request body: {err}");
                            self.fail(500, cx);
                            return Step::Again;
                        }
                        progress == DecodeProgress::Done
                    }
                    Err(err) => return self.reject(err, cx),
                }
            }
        };
        if done {
            let State::Body(pending) = std::mem::replace(&mut self.state, State::App) else {
                return Step::Wait;
            };
            let Pending {
                mut environ,
                ctx,
                started,
                sink,
                received,
                framing,
            } = *pending;
            if matches!(framing, BodyFraming::Chunked(_)) {
                // The app sees a body of known length, as gunicorn's chunked reader gives.
                environ.content_length = received.to_string();
            }
            return match sink.into_input() {
                Ok(input) => self.dispatch(environ, input, ctx, started, cx),
                Err(err) => {
                    crate::log_error!("cannot rewind spooled request body: {err}");
                    self.fail(500, cx);
                    Step::Again
                }
            };
        }
        self.read_more(cx)
    }

    fn dispatch(
        &mut self,
        environ: Environ,
        input: Input,
        ctx: ResponseContext,
        started: Instant,
        cx: &mut Cx,
    ) -> Step {
        self.served += 1;
        *cx.requests += 1;
        match (cx.mode, cx.pool) {
            (Mode::Threaded, Some(pool)) => {
                self.state = State::App;
                let job = Job {
                    key: cx.key,
                    environ,
                    input,
                    ctx,
                    started,
                };
                if pool.submit(job).is_err() {
                    crate::log_error!("app threads are gone: answering 503");
                    self.fail(503, cx);
                }
                Step::Again
            }
            _ => {
                let response = call_app(cx.app.as_ref(), &environ, input);
                let ex = Exchange {
                    environ: &environ,
                    ctx,
                    server: &cx.cfg.server_software,
                    started,
                    access: cx.access,
                };
                let answer = write_response(response, &ex, &mut self.out);
                self.after_answer(answer);
                Step::Again
            }
        }
    }

    fn after_answer(&mut self, answer: Answer) {
        self.state = match answer.rest {
            Some(source) => State::Stream {
                source,
                framing: answer.framing,
                remaining: match answer.framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                },
                keep_alive: answer.keep_alive,
            },
            None if answer.keep_alive => State::Head { started: None },
            None => State::Closing,
        };
    }

    fn on_stream(&mut self, cx: &mut Cx) -> Step {
        if self.out_pos < self.out.len() {
            if self.flush().is_err() {
                return Step::Close;
            }
            if self.out_pos < self.out.len() {
                return Step::Wait;
            }
        }
        let State::Stream {
            source,
            framing,
            remaining,
            keep_alive,
        } = &mut self.state
        else {
            return Step::Wait;
        };
        match source.next_chunk(cx.scratch) {
            Ok(Some(mut chunk)) => {
                match framing {
                    Framing::Length(_) => {
                        let left = remaining.unwrap_or(0);
                        chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                        *remaining = Some(left - chunk.len() as u64);
                        self.out.extend_from_slice(&chunk);
                    }
                    Framing::Chunked => push_chunk(&mut self.out, &chunk),
                    Framing::UntilClose => self.out.extend_from_slice(&chunk),
                    Framing::NoBody => {}
                }
                Step::Again
            }
            Ok(None) => {
                let mut keep = *keep_alive;
                match framing {
                    Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
                    // The app promised more than it gave: the client cannot tell where
                    // the body ends, so the connection must end.
                    Framing::Length(_) if remaining.unwrap_or(0) > 0 => keep = false,
                    Framing::UntilClose => keep = false,
                    _ => {}
                }
                self.state = if keep {
                    State::Head { started: None }
                } else {
                    State::Closing
                };
                Step::Again
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Step::Wait,
            Err(e) => {
                crate::log_error!("error streaming response body: {e}");
                // A body cut short cannot be framed as complete: close without the terminator.
                Step::Close
            }
        }
    }

    fn on_closing(&mut self) -> Step {
        if self.flush().is_err() {
            return Step::Close;
        }
        if self.out_pos < self.out.len() {
            return Step::Wait;
        }
        self.stream.shutdown_write();
        self.inbuf = Vec::new();
        self.state = State::Lingering {
            until: Instant::now() + LINGER,
        };
        Step::Again
    }

    fn on_linger(&mut self, cx: &mut Cx) -> Step {
        while self.readable {
            match self.stream.read(cx.scratch) {
                Ok(0) => return Step::Close,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        Step::Wait
    }

    /// Write what is pending until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() && self.writable {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out_pos >= self.out.len() {
            self.out_pos = 0;
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            if self.inbuf.is_empty() && self.inbuf.capacity() > 64 * 1024 {
                self.inbuf = Vec::new();
            }
        }
        Ok(())
    }
}

impl Sink {
    fn write(&mut self, data: &[u8], spill_at: usize) -> io::Result<()> {
        match self {
            Sink::Memory(buf) if buf.len() + data.len() <= spill_at => {
                buf.extend_from_slice(data);
                Ok(())
            }
            Sink::Memory(buf) => {
                let mut file = tempfile::tempfile()?;
                file.write_all(buf)?;
                file.write_all(data)?;
                *self = Sink::File(file);
                Ok(())
            }
            Sink::File(file) => file.write_all(data),
        }
    }

    fn into_input(self) -> io::Result<Input> {
        Ok(match self {
            Sink::Memory(buf) if buf.is_empty() => Input::Empty,
            Sink::Memory(buf) => Input::Memory(Cursor::new(buf)),
            Sink::File(mut file) => {
                file.rewind()?;
                Input::Spooled(file)
            }
        })
    }
}

impl Conn {
    /// Waiting for a chunk an app thread is producing.
    pub fn waits_on_app_stream(&self) -> bool {
        matches!(
            self.state,
            State::Stream {
                source: BodySource::Channel(_),
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;
    impl App for Never {
        fn call(&self, _: &Environ, _: &mut Input) -> crate::app::Response {
            unreachable!("the request is already on an app thread")
        }
    }

    #[test]
    fn the_504_follows_an_earlier_pipelined_answer_still_unsent() {
        let (ours, mut client) = mio::net::UnixStream::pair().expect("socketpair");
        let mut conn = Conn::new(Stream::Unix(ours), ConnInfo::new(None, None));
        // The first request's answer is queued but the socket was full; the second
        // request is on an app thread that will not come back.
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        conn.out.extend_from_slice(first);
        conn.state = State::App;
        let app: Arc<dyn App> = Arc::new(Never);
        let cfg = WorkerConfig::default();
        let mut scratch = vec![0; 4096];
        let mut requests = 2;
        let mut cx = Cx {
            key: 0,
            app: &app,
            mode: Mode::Threaded,
            pool: None,
            cfg: &cfg,
            access: None,
            scratch: &mut scratch,
            stopping: false,
            requests: &mut requests,
        };
        assert_eq!(conn.gateway_timeout(&mut cx), Outcome::Open);
        conn.writable = true;
        assert_eq!(conn.drive(&mut cx), Outcome::Open);
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        let second = text.find("HTTP/1.1 504 Gateway Timeout\r\n").expect(&text);
        assert_eq!(second, first.len(), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
        // The app's answer, should it ever come, is dropped.
        let late = Answer {
            keep_alive: true,
            framing: Framing::Length(4),
            rest: None,
        };
        conn.answered(b"late".to_vec(), late, &mut cx);
        assert!(!conn.out.windows(4).any(|w| w == b"late"));
    }
}

//! One client connection's state machine: read and parse a request head, receive its
//! body ([`body`]), hand it to the app (inline, or as a [`Job`] for the app threads),
//! write the answer, then wait for the next request or close. The event loop
//! ([`crate::worker`]) owns the sockets, lends every connection the worker's
//! [`Context`], and calls [`Conn::drive`] whenever something about this connection
//! changed; every time the connection keeps lives in its [`State`].
//!
//! Readiness is cached per direction (edge-triggered poll): a read that fills less than
//! the buffer, or any `WouldBlock`, clears it until the next event.

mod body;
mod send;

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{App, Environ, Input, Mode, Response};
use crate::config::WorkerConfig;
use crate::environ::{self, ConnInfo};
use crate::http::{resend, ChunkedDecoder, Framing, Version};
use crate::log::AccessLog;
use crate::pool::{Job, Taken, Ticket};
use crate::respond::{
    call_app, error_response, write_response, BodySource, Exchange, ResponseContext,
};
use crate::stream::Stream;
use body::{BodyError, Pending, Progress};
use rgunicorn_metrics::{Method, Recorder};
use send::Streaming;

/// Stop parsing pipelined requests while this much response is still unsent.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection keeps draining what the client still sends, so the
/// client reads our final response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How long a retiring worker waits for the next request of an idle connection when
/// keep-alive is off (so the only idle connections are new ones).
const RETIRE_WAIT_NO_KEEPALIVE: Duration = Duration::from_secs(1);

/// What the worker owns and lends to a connection while it is driven.
pub struct Context {
    pub app: Arc<dyn App>,
    pub mode: Mode,
    pub cfg: WorkerConfig,
    pub access: Option<AccessLog>,
    pub scratch: Vec<u8>,
    /// Requests this worker has started: drives max_requests and numbers the tickets.
    pub requests: u64,
    /// The worker is retiring: each connection answers the requests it has received,
    /// the last with `Connection: close`, and an idle one waits only a short while for
    /// its next request.
    pub retiring: bool,
    /// No app thread has answered or been free for a while (`Worker::note_progress`):
    /// requests the front offers to take back go back to it unstarted
    /// (`rgunicorn_http::resend`).
    pub stalled: bool,
}

impl Context {
    /// How long a retiring worker waits for an idle connection's next request.
    fn retire_wait(&self) -> Duration {
        if self.cfg.keepalive.is_zero() {
            RETIRE_WAIT_NO_KEEPALIVE
        } else {
            self.cfg.keepalive
        }
    }
}

/// What the loop should do with the connection after driving it.
// A job moves once per request; boxing it would add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Nothing to do: the connection waits for its socket, an app thread or the clock.
    Open,
    /// A request is ready for the app threads: submit it. The connection waits in
    /// [`State::App`] for the answer with this job's ticket.
    Dispatched(Job),
    /// Done with: deregister and drop it.
    Close,
}

#[allow(clippy::large_enum_variant)] // as Outcome
enum Step {
    /// The state changed: look again.
    Again,
    /// Nothing to do until the socket, the app pool or the clock says so.
    Wait,
    Dispatch(Job),
    Close,
}

/// What a parsed request head leaves behind once its bytes are drained from the input.
struct Request {
    environ: Environ,
    version: Version,
    is_head: bool,
    keep_alive: bool,
    body: Framing,
    expect_continue: bool,
    /// The front offered to take this request back (`rgunicorn_http::resend`), and this
    /// connection is from a trusted unix-socket peer, so the offer counts.
    resend_offered: bool,
}

/// What a connection waits for, with the times its deadlines count from.
enum State {
    /// The first byte of a request head (a new connection, or between keep-alive
    /// requests). Its deadline counts from the last bytes moved.
    Idle,
    /// The rest of a request head whose first byte came at `started`.
    Head { started: Instant },
    /// The rest of a request body.
    Body(Box<Pending>),
    /// An app thread's answer to the request (the thread marks the connection's
    /// [`Taken`] when it takes it); `ctx` and `started` frame that answer.
    App {
        ticket: Ticket,
        ctx: ResponseContext,
        started: Instant,
    },
    /// Room in the socket for a body not yet all in the output buffer.
    Stream(Box<Streaming>),
    /// The last response to be flushed; then the write side is shut.
    Closing,
    /// Write side shut; reading and discarding until EOF or `until`.
    Lingering { until: Instant },
}

pub struct Conn {
    key: usize,
    pub stream: Stream,
    info: ConnInfo,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// The environ of the request being answered, or the last one's kept to be refilled
    /// for the next (its strings keep their buffers): a keep-alive request allocates
    /// nothing for its environ. It goes to the app threads with a job and comes back
    /// with the answer.
    environ: Environ,
    state: State,
    pub readable: bool,
    pub writable: bool,
    served: u64,
    /// Last time bytes moved either way (or the connection was accepted).
    last_active: Instant,
    /// The method of the request being answered, for the counters.
    method: Method,
    /// The worker's counters, when metrics are on.
    metrics: Option<Recorder>,
    /// When an app thread took this connection's current request (threaded apps only).
    taken: Option<Taken>,
}

/// What one read gave.
enum Got {
    Data,
    Eof,
    Empty,
    Failed,
}

impl Conn {
    /// A connection accepted into slab entry `key`.
    pub fn new(key: usize, stream: Stream, info: ConnInfo, metrics: Option<Recorder>) -> Conn {
        Conn {
            key,
            stream,
            info,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            environ: Environ::default(),
            state: State::Idle,
            readable: false,
            writable: false,
            served: 0,
            last_active: Instant::now(),
            method: Method::Other,
            metrics,
            taken: None,
        }
    }

    /// Make all the progress possible now.
    pub fn drive(&mut self, cx: &mut Context) -> Outcome {
        loop {
            let step = match self.state {
                State::Idle | State::Head { .. } => self.on_head(cx),
                State::Body(_) => self.on_body(cx),
                State::App { .. } => Step::Wait,
                State::Stream(_) => self.on_stream(cx),
                State::Closing => self.on_closing(),
                State::Lingering { .. } => self.on_linger(cx),
            };
            match step {
                Step::Again => continue,
                Step::Close => return Outcome::Close,
                Step::Dispatch(job) => {
                    // Earlier pipelined answers go out before the app thread is busy.
                    return match self.flush() {
                        Ok(()) => Outcome::Dispatched(job),
                        Err(_) => Outcome::Close,
                    };
                }
                Step::Wait => {
                    let before = self.unsent();
                    if self.flush().is_err() {
                        return Outcome::Close;
                    }
                    // Sending made room under the high-water mark: parsing and reading
                    // may go on, and no event will say so (edge-triggered).
                    if before > OUT_HIGH_WATER && self.unsent() <= OUT_HIGH_WATER {
                        continue;
                    }
                    return Outcome::Open;
                }
            }
        }
    }

    /// The worker began to retire: read what the client has already sent, regardless of
    /// the cached readiness, and answer it (the last request with `Connection: close`).
    pub fn retire(&mut self, cx: &mut Context) -> Outcome {
        self.readable = true;
        self.drive(cx)
    }

    /// The client shut its sending side (the socket said so). If an app thread is
    /// pulling a stream for this connection and the client sent nothing more, the
    /// client has gone, as nginx judges it: drop the connection now, so the thread lets
    /// go of the app's iterator as soon as it next hands over a chunk, rather than after
    /// a write has failed a chunk later.
    pub fn client_shut(&mut self, cx: &mut Context) -> Outcome {
        if let State::Stream(s) = &self.state {
            if s.app.is_some() && self.inbuf.is_empty() && self.stream.peer_done_sending() {
                crate::log_debug!("{} closed during a streamed answer", self.peer_name());
                return Outcome::Close;
            }
        }
        self.readable = true;
        self.drive(cx)
    }

    /// An app thread answered `ticket`: frame the response. An answer nobody waits for
    /// any more (the client was answered 504) is dropped, and with it any stream the
    /// thread still pulls.
    pub fn answered(
        &mut self,
        ticket: Ticket,
        environ: Environ,
        response: Response,
        cx: &mut Context,
    ) -> Outcome {
        let (ctx, started) = match self.state {
            State::App {
                ticket: t,
                ctx,
                started,
            } if t == ticket => (ctx, started),
            _ => return Outcome::Open,
        };
        // A streamed body keeps the app's clock running from when its thread took it.
        let since = self.taken_at().unwrap_or_else(Instant::now);
        self.respond(&environ, response, ctx, started, Some((ticket, since)), cx);
        self.environ = environ;
        self.drive(cx)
    }

    /// An app thread put a chunk of `ticket`'s streamed body in its channel, or ended it.
    pub fn stream_ready(&mut self, ticket: Ticket, cx: &mut Context) -> Outcome {
        match &self.state {
            State::Stream(s) if s.app.is_some_and(|(t, _)| t == ticket) => self.drive(cx),
            _ => Outcome::Open,
        }
    }

    /// The app threads could not take the request: answer 503 and close.
    pub fn refused(&mut self, cx: &mut Context) -> Outcome {
        self.fail(503, cx);
        self.drive(cx)
    }

    /// Whether an app thread has held this connection's request `limit` or longer. A
    /// request still waiting for a free thread has not started: it cannot overrun.
    pub fn app_overran(&self, now: Instant, limit: Duration) -> bool {
        let since = match &self.state {
            State::App { .. } => match self.taken_at() {
                Some(at) => at,
                None => return false,
            },
            State::Stream(s) => match s.app {
                Some((_, since)) => since,
                None => return false,
            },
            _ => return false,
        };
        now.saturating_duration_since(since) >= limit
    }

    /// When an app thread took the current request, if one did.
    fn taken_at(&self) -> Option<Instant> {
        self.taken.as_ref().and_then(Taken::at)
    }

    /// Give up on the app thread's answer (see [`Conn::app_overran`]): a 504 when no
    /// byte of the response went out yet, queued behind any earlier pipelined answer;
    /// otherwise the body is cut short and the connection closes. Either way the late
    /// answer or chunks are dropped.
    pub fn abandon_app(&mut self, cx: &mut Context) -> Outcome {
        match self.state {
            State::App { .. } => self.fail(504, cx),
            _ => self.state = State::Closing,
        }
        self.drive(cx)
    }

    /// The clock ticked: enforce the header, body, idle and write deadlines.
    pub fn check_deadline(&mut self, now: Instant, cx: &mut Context) -> Outcome {
        let cfg = &cx.cfg;
        let quiet = now.saturating_duration_since(self.last_active);
        match &self.state {
            State::Head { started }
                if now.saturating_duration_since(*started) >= cfg.header_timeout =>
            {
                self.fail(408, cx);
                self.drive(cx)
            }
            State::Idle if self.unsent() == 0 => {
                let limit = if cx.retiring {
                    cx.retire_wait()
                } else if self.served == 0 {
                    cfg.header_timeout
                } else {
                    cfg.keepalive
                };
                if quiet >= limit {
                    // Write side first: a request crossing our FIN meets a clean
                    // close, never a reset.
                    self.state = State::Closing;
                    self.drive(cx)
                } else {
                    Outcome::Open
                }
            }
            State::Body(p) => {
                let elapsed = now.saturating_duration_since(p.started);
                let grace = Duration::from_secs(5);
                let wanted =
                    (elapsed.saturating_sub(grace).as_secs_f64() * cfg.min_body_rate as f64) as u64;
                if elapsed > grace && p.received < wanted || quiet >= cfg.header_timeout {
                    crate::log_info!("body too slow from {}: closing", self.peer_name());
                    self.fail(408, cx);
                    self.drive(cx)
                } else {
                    Outcome::Open
                }
            }
            State::Lingering { until } if now >= *until => Outcome::Close,
            State::App { .. } => Outcome::Open,
            // Unsent output with no progress: the client stopped reading.
            _ if self.unsent() > 0 && quiet >= cfg.header_timeout.max(cfg.timeout) => {
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

    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn on_head(&mut self, cx: &mut Context) -> Step {
        if self.unsent() > OUT_HIGH_WATER {
            // The client is not reading its answers: take no more of its requests
            // until it does (`drive` looks again once the output drains).
            return Step::Wait;
        }
        if !self.inbuf.is_empty() {
            match rgunicorn_http::parse_request_head(&self.inbuf, &cx.cfg.limits) {
                Ok(Some(head)) => {
                    // The head borrows the input: take what the request needs, then drain.
                    let mut environ = std::mem::take(&mut self.environ);
                    let offered =
                        environ::fill(&mut environ, &head, &self.info, &cx.cfg.forwarded_allow);
                    let request = Request {
                        environ,
                        version: head.version,
                        is_head: head.is_head(),
                        keep_alive: head.keep_alive,
                        body: head.body,
                        expect_continue: head.expect_continue,
                        resend_offered: offered && self.info.trusted_unix_peer,
                    };
                    self.inbuf.drain(..head.head_len);
                    return self.start_request(request, cx);
                }
                Ok(None) => {
                    if let State::Idle = self.state {
                        self.state = State::Head {
                            started: Instant::now(),
                        };
                    }
                }
                Err(err) => {
                    crate::log_debug!("bad request from {}: {err}", self.peer_name());
                    self.fail(err.status(), cx);
                    return Step::Again;
                }
            }
        }
        self.read_more(cx)
    }

    /// One read into `inbuf`, when the socket may have bytes.
    fn read_more(&mut self, cx: &mut Context) -> Step {
        if !self.readable {
            return Step::Wait;
        }
        match self.read_some(&mut cx.scratch) {
            Got::Data => Step::Again,
            Got::Empty => Step::Wait,
            Got::Eof if self.unsent() > 0 => {
                // The client half-closed after its last request: deliver the answers first.
                self.state = State::Closing;
                Step::Again
            }
            Got::Eof | Got::Failed => Step::Close,
        }
    }

    fn read_some(&mut self, scratch: &mut [u8]) -> Got {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Got::Eof,
                Ok(n) => {
                    if let Some(metrics) = self.metrics {
                        metrics.received(n);
                    }
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.last_active = Instant::now();
                    if n < scratch.len() {
                        // A short read drained the socket; new data brings a new event.
                        self.readable = false;
                    }
                    return Got::Data;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Got::Empty;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Got::Failed,
            }
        }
    }

    /// Answer an error status and close; nothing after it on this connection is read.
    fn fail(&mut self, status: u16, cx: &Context) {
        if let Some(metrics) = self.metrics {
            // An app thread's request (504, 503) was in flight; one refused before the
            // app saw it (400, 408, 413...) was not.
            let (took, in_flight) = match &self.state {
                State::App { started, .. } => (started.elapsed(), true),
                _ => (Duration::ZERO, false),
            };
            metrics.answered(self.method, status, took, in_flight);
            self.method = Method::Other;
        }
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

    fn start_request(&mut self, head: Request, cx: &mut Context) -> Step {
        let started = Instant::now();
        let ctx = ResponseContext {
            version: head.version,
            is_head: head.is_head,
            // What the client asked for; the server's say comes at dispatch.
            keep_alive: head.keep_alive,
        };
        let environ = head.environ;
        if self.metrics.is_some() {
            self.method = Method::of(&environ.method);
        }
        let pending = match head.body {
            Framing::NoBody | Framing::UntilClose | Framing::Length(0) => {
                // Only a whole request the front still holds may go back to it.
                let resendable =
                    head.resend_offered && head.keep_alive && cx.mode == Mode::Threaded;
                if resendable && cx.stalled && !cx.retiring {
                    return self.hand_back(environ);
                }
                return self.dispatch(environ, Input::Empty, ctx, started, resendable, cx);
            }
            Framing::Length(n) => {
                if cx.cfg.limit_request_body > 0 && n > cx.cfg.limit_request_body {
                    self.fail(413, cx);
                    return Step::Again;
                }
                Pending::length(environ, ctx, started, n)
            }
            // A chunk whose size takes the body past limit_request_body is refused (413)
            // as soon as its size line arrives.
            Framing::Chunked => Pending::chunked(
                environ,
                ctx,
                started,
                ChunkedDecoder::with_limits(&cx.cfg.limits)
                    .with_max_body(cx.cfg.limit_request_body),
            ),
        };
        if head.expect_continue && head.version == Version::Http11 && self.inbuf.is_empty() {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.state = State::Body(Box::new(pending));
        Step::Again
    }

    fn on_body(&mut self, cx: &mut Context) -> Step {
        let State::Body(pending) = &mut self.state else {
            return Step::Wait;
        };
        let fed = pending.feed(&self.inbuf, cx.cfg.body_buffer_size);
        match fed {
            Ok((taken, progress)) => {
                self.inbuf.drain(..taken);
                if progress == Progress::NeedMore {
                    return self.read_more(cx);
                }
            }
            Err(err) => {
                match &err {
                    BodyError::Spool(_) => crate::log_error!("{err}"),
                    _ => crate::log_debug!("bad request body from {}: {err}", self.peer_name()),
                }
                self.fail(err.status(), cx);
                return Step::Again;
            }
        }
        let State::Body(pending) = std::mem::replace(&mut self.state, State::Idle) else {
            return Step::Wait;
        };
        match pending.finish() {
            Ok((environ, input, ctx, started)) => {
                self.dispatch(environ, input, ctx, started, false, cx)
            }
            Err(err) => {
                crate::log_error!("cannot rewind spooled request body: {err}");
                self.fail(500, cx);
                Step::Again
            }
        }
    }

    /// Whether this response may leave the connection open. A retiring worker (or one
    /// at max_requests) keeps it open only for requests the client already sent behind
    /// this one, so every request received is answered and the last one says close.
    fn keeps_alive(&mut self, client_wants: bool, cx: &mut Context) -> bool {
        if !client_wants || cx.cfg.keepalive.is_zero() {
            return false;
        }
        let last = cx.cfg.max_requests > 0 && cx.requests >= cx.cfg.max_requests;
        if !(cx.retiring || last) {
            return true;
        }
        if self.inbuf.is_empty() && matches!(self.read_some(&mut cx.scratch), Got::Eof) {
            return false;
        }
        !self.inbuf.is_empty()
    }

    /// `resendable`: the front offered to take the request back and may have it back
    /// while it waits for a thread ([`Conn::hand_back_queued`]).
    fn dispatch(
        &mut self,
        environ: Environ,
        input: Input,
        ctx: ResponseContext,
        started: Instant,
        resendable: bool,
        cx: &mut Context,
    ) -> Step {
        self.served += 1;
        cx.requests += 1;
        match cx.mode {
            Mode::Threaded => {
                if let Some(metrics) = self.metrics {
                    metrics.started();
                }
                let ticket = Ticket {
                    key: self.key,
                    seq: cx.requests,
                };
                self.state = State::App {
                    ticket,
                    ctx,
                    started,
                };
                let taken = self.taken.get_or_insert_with(Taken::default);
                taken.reset();
                Step::Dispatch(Job {
                    ticket,
                    environ,
                    input,
                    taken: taken.clone(),
                    resendable,
                })
            }
            Mode::Inline => {
                let response = call_app(cx.app.as_ref(), &environ, input);
                self.respond(&environ, response, ctx, started, None, cx);
                self.environ = environ;
                Step::Again
            }
        }
    }

    /// Give the front back a request it offered to take back, unstarted: the app never
    /// sees it and it is not counted (`rgunicorn_http::resend`). The connection stays
    /// open for the front's next request.
    fn hand_back(&mut self, environ: Environ) -> Step {
        self.environ = environ;
        self.method = Method::Other;
        self.out.extend_from_slice(resend::HANDED_BACK);
        self.state = State::Idle;
        Step::Again
    }

    /// Whether `job`, which the loop took out of the queue before any thread did, is
    /// this connection's current request and may go back to the front.
    pub fn takes_back(&self, job: &Job) -> bool {
        job.resendable && matches!(self.state, State::App { ticket, .. } if ticket == job.ticket)
    }

    /// Give the front back `job`'s request (see [`Conn::takes_back`]), undoing its
    /// dispatch.
    pub fn hand_back_queued(&mut self, job: Job, cx: &mut Context) -> Outcome {
        self.served = self.served.saturating_sub(1);
        cx.requests = cx.requests.saturating_sub(1);
        if let Some(metrics) = self.metrics {
            metrics.abandoned();
        }
        // The hand-back answers in place of the app: pipelined requests behind it follow.
        let _ = self.hand_back(job.environ);
        self.drive(cx)
    }

    /// Frame the app's answer into the output buffer and move to what follows it.
    /// `pulled`: the answer came from an app thread, which pulls a streamed body.
    fn respond(
        &mut self,
        environ: &Environ,
        response: Response,
        mut ctx: ResponseContext,
        started: Instant,
        pulled: Option<(Ticket, Instant)>,
        cx: &mut Context,
    ) {
        ctx.keep_alive = self.keeps_alive(ctx.keep_alive, cx);
        if let Some(metrics) = self.metrics {
            // An inline app's request is answered in the call that started it: it is
            // never seen in flight, so it is not counted in and out.
            metrics.answered(
                self.method,
                response.status,
                started.elapsed(),
                pulled.is_some(),
            );
            self.method = Method::Other;
        }
        let ex = Exchange {
            environ,
            ctx,
            server: &cx.cfg.server_software,
            started,
            access: cx.access.as_ref(),
        };
        let answer = write_response(response, &ex, &mut self.out);
        self.state = match answer.rest {
            Some(source) => {
                // Only a stream an app thread pulls keeps the app's clock running.
                let app = pulled.filter(|_| matches!(source, BodySource::Iter(_)));
                State::Stream(Box::new(Streaming::new(
                    source,
                    answer.framing,
                    answer.keep_alive,
                    app,
                )))
            }
            None if answer.keep_alive => State::Idle,
            None => State::Closing,
        };
    }

    fn on_closing(&mut self) -> Step {
        if self.flush().is_err() {
            return Step::Close;
        }
        if self.unsent() > 0 {
            return Step::Wait;
        }
        self.stream.shutdown_write();
        self.inbuf = Vec::new();
        self.state = State::Lingering {
            until: Instant::now() + LINGER,
        };
        Step::Again
    }

    fn on_linger(&mut self, cx: &mut Context) -> Step {
        while self.readable {
            match self.stream.read(&mut cx.scratch) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    if let Some(metrics) = self.metrics {
                        metrics.received(n);
                    }
                }
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
                    if let Some(metrics) = self.metrics {
                        metrics.sent(n);
                    }
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

impl Drop for Conn {
    /// A connection dropped while an app thread holds its request (the client left, a
    /// deadline passed, the worker stops): that request is no longer in flight.
    fn drop(&mut self) {
        if let (Some(metrics), State::App { .. }) = (self.metrics, &self.state) {
            metrics.abandoned();
        }
    }
}

#[cfg(test)]
mod tests;

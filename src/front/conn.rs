//! One client connection over TLS and the upstream socket serving its current request.
//!
//! Layered as rustls's `tlsserver-mio` example: socket ↔ rustls ↔ plaintext buffers. Every
//! event runs [`Client::drive`], which moves bytes until nothing moves (mio is
//! edge-triggered), then derives both sockets' interest from the state. Buffers are
//! bounded ([`BUF_CAP`]): a full buffer stops reading on the side that fills it. The
//! request/response logic is in [`super::exchange`], the event loop in [`super::event_loop`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Interest;
use rustls::{ServerConfig, ServerConnection};

use rgunicorn_workers::http::parse_request_head;

use super::event_loop::{client_token, upstream_token, Ctx, Outcome};
use super::exchange::{Exchange, ExchangeError, RequestBody, RequestInfo, Response, BUF_CAP};
use super::headers;
use super::log::{AccessEntry, Level};
use super::settings::MIN_RATE_GRACE;
use super::upstream::{self, Stream};

/// The largest request head the front reads (nginx's large_client_header_buffers is 4×8k).
pub const HEAD_CAP: usize = 64 * 1024;
/// How long a closing connection keeps reading (and discarding) so the client sees the
/// response before a reset: nginx's lingering close.
const LINGER: Duration = Duration::from_secs(2);
/// While draining, how long an idle keep-alive connection may still bring one more
/// request (answered with `Connection: close`) before it is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(500);

/// What the client connection waits for.
enum State {
    /// Keep-alive between requests (or a fresh connection before its first byte).
    Idle { since: Instant },
    /// The TLS handshake and the request head.
    Head { since: Instant },
    /// A request crossing to the workers and its response coming back.
    Proxy(Box<Exchange>),
    /// The last response (maybe an error page) is being flushed.
    Closing { since: Instant },
    /// close_notify sent, write side shut: discarding input until EOF or the deadline.
    Lingering { until: Instant },
}

/// The upstream socket and whether its connect has finished.
struct Upstream {
    stream: Stream,
    phase: UpPhase,
    reused: bool,
    registered: Option<Interest>,
    /// The socket may have bytes to read: set by its events, cleared by a short read or
    /// `WouldBlock` (edge-triggered poll brings a new event when more arrive).
    ready: bool,
    /// The worker closed its side: the EOF may sit behind the data already readable,
    /// with no further event to announce it, so read until it shows.
    hup: bool,
}

enum UpPhase {
    Connecting { since: Instant },
    Open,
}

/// Something failed on the upstream socket.
enum UpEvent {
    ConnectFailed(io::Error),
    WriteFailed(io::Error),
    ReadFailed(io::Error),
    Eof,
}

/// The connection must close now (nothing more can be said to the client).
pub struct Close;

pub struct Client {
    sock: TcpStream,
    tls: ServerConnection,
    peer: SocketAddr,
    key: usize,
    /// Plaintext from the client not yet consumed.
    input: Vec<u8>,
    /// Plaintext for the client not yet taken by rustls.
    output: Vec<u8>,
    state: State,
    upstream: Option<Upstream>,
    /// The client ended its side (close_notify or EOF).
    peer_done: bool,
    /// Last time writing to the client was not blocked.
    last_write: Instant,
    /// The client socket may have bytes to read (as [`Upstream::ready`]): a read that
    /// could only say `WouldBlock` is not made, which halves the syscalls per request.
    sock_ready: bool,
    /// As [`Upstream::hup`], for the client's side.
    sock_hup: bool,
}

impl Client {
    pub fn new(
        mut sock: TcpStream,
        peer: SocketAddr,
        key: usize,
        config: Arc<ServerConfig>,
        ctx: &Ctx<'_>,
    ) -> Result<Client, io::Error> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(BUF_CAP));
        let _ = sock.set_nodelay(true);
        ctx.registry.register(
            &mut sock,
            client_token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Client {
            sock,
            tls,
            peer,
            key,
            input: Vec::new(),
            output: Vec::new(),
            state: State::Head { since: ctx.now },
            upstream: None,
            peer_done: false,
            last_write: ctx.now,
            sock_ready: true,
            sock_hup: false,
        })
    }

    /// Handle readiness on either socket: move bytes until nothing moves.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let result = self.work(ctx);
        self.settle(ctx, result)
    }

    fn work(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Close> {
        loop {
            let mut progress = self.read_client(ctx)?;
            progress |= self.advance(ctx)?;
            progress |= self.pump_upstream(ctx)?;
            progress |= self.advance(ctx)?;
            progress |= self.flush_client()?;
            if !progress {
                return Ok(());
            }
        }
    }

    /// Close now, or register a new upstream socket.
    fn settle(&mut self, ctx: &mut Ctx<'_>, result: Result<(), Close>) -> Outcome {
        if result.is_err() {
            self.close(ctx);
            return Outcome::Closed;
        }
        // Both sockets are registered once for both directions. Poll is edge-triggered,
        // so a writable socket is announced only when it becomes writable again after a
        // write was refused: no busy wake-ups, and no epoll_ctl each time a response
        // starts or ends (the interest used to be recomputed and re-registered).
        if let (Some(up), State::Proxy(_)) = (&mut self.upstream, &self.state) {
            if up.registered.is_none() {
                let token = upstream_token(self.key);
                let both = Interest::READABLE | Interest::WRITABLE;
                if ctx.registry.register(&mut up.stream, token, both).is_err() {
                    self.close(ctx);
                    return Outcome::Closed;
                }
                up.registered = Some(both);
            }
        }
        Outcome::Open
    }

    /// Poll said something about one of this connection's sockets: it may be readable.
    pub fn note_event(&mut self, upstream: bool, read_closed: bool) {
        match (upstream, self.upstream.as_mut()) {
            (true, Some(up)) => {
                up.ready = true;
                up.hup |= read_closed;
            }
            (true, None) => {}
            (false, _) => {
                self.sock_ready = true;
                self.sock_hup |= read_closed;
            }
        }
    }

    /// TLS records in, plaintext into `input` while it has room.
    fn read_client(&mut self, ctx: &Ctx<'_>) -> Result<bool, Close> {
        if let State::Lingering { .. } = self.state {
            if !self.sock_ready {
                return Ok(false);
            }
            let mut scratch = [0u8; 4096];
            return match self.sock.read(&mut scratch) {
                Ok(0) => Err(Close),
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.sock_ready = false;
                    Ok(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
                Err(_) => Err(Close),
            };
        }
        if self.peer_done || matches!(self.state, State::Closing { .. }) {
            return Ok(false);
        }
        let cap = match self.state {
            State::Idle { .. } | State::Head { .. } => HEAD_CAP,
            _ => BUF_CAP,
        };
        let mut progress = false;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while self.input.len() < cap {
                let room = (cap - self.input.len()).min(chunk.len());
                match self.tls.reader().read(&mut chunk[..room]) {
                    Ok(0) => {
                        self.peer_done = true;
                        break;
                    }
                    Ok(n) => {
                        self.input.extend_from_slice(&chunk[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // EOF without close_notify: treat as the end of the client's side.
                        self.peer_done = true;
                        break;
                    }
                }
            }
            if self.input.len() >= cap || self.peer_done || !self.sock_ready {
                return Ok(progress);
            }
            let mut probe = ShortRead {
                sock: &mut self.sock,
                drained: false,
            };
            let read = self.tls.read_tls(&mut probe);
            if probe.drained && !self.sock_hup {
                self.sock_ready = false;
            }
            match read {
                Ok(0) => {
                    self.peer_done = true;
                    progress = true;
                }
                Ok(_) => {
                    progress = true;
                    if let Err(err) = self.tls.process_new_packets() {
                        ctx.log
                            .info(&format!("TLS error with client {}: {err}", self.peer.ip()));
                        // Flush the alert rustls queued, once, then give up.
                        let _ = self.tls.write_tls(&mut self.sock);
                        return Err(Close);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.sock_ready = false;
                    return Ok(progress);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    ctx.log.info(&format!(
                        "reading from client {} failed: {err}",
                        self.peer.ip()
                    ));
                    return Err(Close);
                }
            }
        }
    }

    /// Plaintext out, TLS records to the socket.
    fn flush_client(&mut self) -> Result<bool, Close> {
        let mut progress = false;
        while !self.output.is_empty() {
            match self.tls.writer().write(&self.output) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.output.drain(..n);
                    progress = true;
                }
            }
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close),
            }
        }
        let flushed = self.output.is_empty() && !self.tls.wants_write();
        if progress || flushed {
            self.last_write = Instant::now();
        }
        if flushed {
            if let State::Closing { .. } = self.state {
                self.tls.send_close_notify();
                let _ = self.tls.write_tls(&mut self.sock);
                let _ = self.sock.shutdown(Shutdown::Write);
                self.state = State::Lingering {
                    until: Instant::now() + LINGER,
                };
                return Ok(true);
            }
        }
        Ok(progress)
    }

    /// Run the request state machine on what is buffered.
    fn advance(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Close> {
        match &mut self.state {
            State::Idle { .. } if !self.input.is_empty() => {
                self.state = State::Head { since: ctx.now };
                Ok(true)
            }
            State::Idle { .. } if self.peer_done => Err(Close),
            State::Head { .. } => {
                if self.tls.is_handshaking() {
                    return if self.peer_done {
                        Err(Close)
                    } else {
                        Ok(false)
                    };
                }
                match parse_request_head(&self.input, &ctx.rt.settings.limits) {
                    Err(err) => self.fail(ctx, None, err.status()),
                    Ok(None) if self.input.len() >= HEAD_CAP => self.fail(ctx, None, 431),
                    Ok(None) if self.peer_done => Err(Close),
                    Ok(None) => Ok(false),
                    Ok(Some(head)) => {
                        self.input.drain(..head.head_len);
                        let settings = &ctx.rt.settings;
                        match Exchange::start(&head, self.peer.ip(), settings, ctx.now) {
                            Err((info, status)) => self.fail(ctx, Some(info), status),
                            Ok(exchange) => {
                                if head.expect_continue && exchange.body.in_progress() {
                                    self.output
                                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                                }
                                self.state = State::Proxy(Box::new(exchange));
                                self.attach_upstream(ctx, true)?;
                                Ok(true)
                            }
                        }
                    }
                }
            }
            State::Proxy(x) if self.peer_done && x.body.in_progress() && self.input.is_empty() => {
                // The client left in the middle of its request body: nothing to answer.
                Err(Close)
            }
            State::Proxy(x) => {
                let max = ctx.rt.settings.client_max_body_size;
                let mut progress = match x.take_body(&mut self.input, max, ctx.now) {
                    Ok(p) => p,
                    Err(err) => return self.exchange_failed(ctx, err),
                };
                let State::Proxy(x) = &mut self.state else {
                    return Ok(progress);
                };
                match x.give_response(&mut self.output, &ctx.rt.settings, ctx.draining) {
                    Ok(p) => progress |= p,
                    Err(err) => return self.exchange_failed(ctx, err),
                }
                if let State::Proxy(x) = &self.state {
                    if x.finished() {
                        self.finish(ctx);
                        progress = true;
                    }
                }
                Ok(progress)
            }
            _ => Ok(false),
        }
    }

    fn exchange_failed(&mut self, ctx: &mut Ctx<'_>, err: ExchangeError) -> Result<bool, Close> {
        if let ExchangeError::Upstream(e) = &err {
            ctx.log.error(&format!(
                "upstream {} sent an invalid response: {e}, client: {}",
                ctx.rt.settings.upstream,
                self.peer.ip()
            ));
        }
        self.fail(ctx, None, err.status())
    }

    /// The response is complete: log, give the upstream back, wait for the next request.
    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        let State::Proxy(x) = &self.state else {
            return;
        };
        self.log_access(ctx, &x.info, x.status, x.body_sent);
        let reusable = x.upstream_reusable();
        let close = x.close_after || self.peer_done || ctx.draining;
        if let Some(mut up) = self.upstream.take() {
            if up.registered.is_some() {
                let _ = ctx.registry.deregister(&mut up.stream);
            }
            if reusable && matches!(up.phase, UpPhase::Open) {
                ctx.pool.put(up.stream, ctx.rt.settings.upstream_keepalive);
            }
        }
        self.state = if close {
            State::Closing { since: ctx.now }
        } else {
            State::Idle { since: ctx.now }
        };
    }

    /// Answer `status` from the front and close, or just close when a response has begun.
    fn fail(
        &mut self,
        ctx: &mut Ctx<'_>,
        info: Option<RequestInfo>,
        status: u16,
    ) -> Result<bool, Close> {
        let (info, head_only) = match &self.state {
            State::Proxy(x) if !x.response_unstarted() => return Err(Close),
            State::Proxy(x) => (x.info.clone(), x.head_request),
            _ => (info.unwrap_or_default(), false),
        };
        self.drop_upstream(ctx);
        let before = self.output.len();
        headers::error_response(status, head_only, &ctx.rt.settings, &mut self.output);
        let sent = if head_only {
            0
        } else {
            (self.output.len() - before) as u64
        };
        self.log_access(ctx, &info, status, sent);
        self.state = State::Closing { since: ctx.now };
        Ok(true)
    }

    fn drop_upstream(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(mut up) = self.upstream.take() {
            if up.registered.is_some() {
                let _ = ctx.registry.deregister(&mut up.stream);
            }
        }
    }

    /// Give the exchange an upstream connection: a pooled one when allowed, else a new one.
    fn attach_upstream(&mut self, ctx: &mut Ctx<'_>, pooled: bool) -> Result<bool, Close> {
        let settings = &ctx.rt.settings;
        let reused = if pooled {
            ctx.pool.take(settings.upstream_keepalive_timeout)
        } else {
            None
        };
        let upstream = match reused {
            Some(stream) => Upstream {
                stream,
                phase: UpPhase::Open,
                reused: true,
                registered: None,
                ready: true,
                hup: false,
            },
            None => match upstream::connect(&settings.upstream) {
                Ok(stream) => Upstream {
                    stream,
                    phase: UpPhase::Connecting { since: ctx.now },
                    reused: false,
                    registered: None,
                    ready: true,
                    hup: false,
                },
                Err(err) => {
                    ctx.log.error(&format!(
                        "connect() to {} failed: {err}, client: {}",
                        settings.upstream,
                        self.peer.ip()
                    ));
                    return self.fail(ctx, None, 502);
                }
            },
        };
        self.upstream = Some(upstream);
        Ok(true)
    }

    /// Connect, write the queued request bytes, read the response bytes.
    fn pump_upstream(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Close> {
        match self.pump_upstream_io(ctx.now) {
            Ok(progress) => Ok(progress),
            Err(event) => self.upstream_event(ctx, event),
        }
    }

    fn pump_upstream_io(&mut self, now: Instant) -> Result<bool, UpEvent> {
        let (State::Proxy(x), Some(up)) = (&mut self.state, &mut self.upstream) else {
            return Ok(false);
        };
        let mut progress = false;
        if let UpPhase::Connecting { .. } = up.phase {
            match upstream::connected(&up.stream) {
                Ok(true) => {
                    up.phase = UpPhase::Open;
                    progress = true;
                }
                Ok(false) => return Ok(false),
                Err(err) => return Err(UpEvent::ConnectFailed(err)),
            }
        }
        while !x.to_upstream.is_empty() {
            match up.stream.write(&x.to_upstream) {
                Ok(0) => break,
                Ok(n) => {
                    x.to_upstream.drain(..n);
                    x.last_upstream = now;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UpEvent::WriteFailed(e)),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        while up.ready
            && x.from_upstream.len() < BUF_CAP
            && !matches!(x.response, Response::Done { .. })
        {
            let room = (BUF_CAP - x.from_upstream.len()).min(chunk.len());
            match up.stream.read(&mut chunk[..room]) {
                Ok(0) => return Err(UpEvent::Eof),
                Ok(n) => {
                    if n < room && !up.hup {
                        // Drained: the next bytes bring a new event.
                        up.ready = false;
                    }
                    x.from_upstream.extend_from_slice(&chunk[..n]);
                    x.last_upstream = now;
                    x.replay = None;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    up.ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UpEvent::ReadFailed(e)),
            }
        }
        Ok(progress)
    }

    fn upstream_event(&mut self, ctx: &mut Ctx<'_>, event: UpEvent) -> Result<bool, Close> {
        let reused = self.upstream.as_ref().is_some_and(|up| up.reused);
        let State::Proxy(x) = &mut self.state else {
            return Ok(false);
        };
        let upstream = &ctx.rt.settings.upstream;
        let client = self.peer.ip();
        match event {
            UpEvent::ConnectFailed(err) => {
                ctx.log.error(&format!(
                    "connect() to {upstream} failed: {err}, client: {client}"
                ));
                self.fail(ctx, None, 502)
            }
            UpEvent::WriteFailed(err) if !x.response_unstarted() || !x.from_upstream.is_empty() => {
                // The workers answered early and stopped reading: keep their answer.
                ctx.log.info(&format!(
                    "upstream {upstream} stopped reading the request: {err}"
                ));
                x.to_upstream.clear();
                x.body = RequestBody::Abandoned;
                x.close_after = true;
                Ok(true)
            }
            UpEvent::Eof if x.upstream_eof(&mut self.output) => {
                self.drop_upstream(ctx);
                Ok(true)
            }
            UpEvent::WriteFailed(_) | UpEvent::ReadFailed(_) | UpEvent::Eof
                if reused
                    && x.response_unstarted()
                    && x.from_upstream.is_empty()
                    && x.attempts < 2 =>
            {
                // A pooled connection the worker closed as we sent: replay on a new one.
                if let Some(replay) = x.replay.clone() {
                    x.attempts += 1;
                    x.to_upstream = replay;
                    self.drop_upstream(ctx);
                    return self.attach_upstream(ctx, false);
                }
                self.upstream_broke(ctx, "closed the connection")
            }
            UpEvent::WriteFailed(err) | UpEvent::ReadFailed(err) => {
                self.upstream_broke(ctx, &err.to_string())
            }
            UpEvent::Eof => self.upstream_broke(ctx, "prematurely closed the connection"),
        }
    }

    fn upstream_broke(&mut self, ctx: &mut Ctx<'_>, what: &str) -> Result<bool, Close> {
        let reading = match &self.state {
            State::Proxy(x) if x.response_unstarted() => "while reading the response header",
            _ => "while sending the response",
        };
        ctx.log.error(&format!(
            "upstream {} {what} {reading}, client: {}",
            ctx.rt.settings.upstream,
            self.peer.ip()
        ));
        self.fail(ctx, None, 502)
    }

    /// Enforce the state's deadline; called by the loop's periodic sweep.
    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let s = &ctx.rt.settings;
        let now = ctx.now;
        let pending_output = !self.output.is_empty() || self.tls.wants_write();
        let result = if pending_output && now.duration_since(self.last_write) > s.send_timeout {
            Err(Close)
        } else {
            match &self.state {
                State::Idle { since } if now.duration_since(*since) > s.keepalive_timeout => {
                    Err(Close)
                }
                // Not at once: at full rate the client's next request is on its way,
                // and is answered with `Connection: close` instead of being reset.
                State::Idle { since }
                    if ctx.draining && now.duration_since(*since) > DRAIN_IDLE_GRACE =>
                {
                    Err(Close)
                }
                State::Head { since } if now.duration_since(*since) > s.client_header_timeout => {
                    if self.tls.is_handshaking() {
                        Err(Close)
                    } else {
                        self.fail(ctx, None, 408).map(|_| ())
                    }
                }
                State::Proxy(_) => self.proxy_deadline(ctx),
                State::Closing { since } if now.duration_since(*since) > s.send_timeout => {
                    Err(Close)
                }
                State::Lingering { until } if now > *until => Err(Close),
                _ => Ok(()),
            }
        };
        let result = result.and_then(|()| self.work(ctx));
        self.settle(ctx, result)
    }

    fn proxy_deadline(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Close> {
        let s = &ctx.rt.settings;
        let now = ctx.now;
        let State::Proxy(x) = &self.state else {
            return Ok(());
        };
        let client = self.peer.ip();
        let connecting = matches!(
            self.upstream,
            Some(Upstream {
                phase: UpPhase::Connecting { since },
                ..
            }) if now.duration_since(since) > s.upstream_connect_timeout
        );
        let elapsed = now.duration_since(x.started);
        let too_slow = s.client_body_min_rate > 0
            && elapsed > MIN_RATE_GRACE
            && (x.body_received as f64) < s.client_body_min_rate as f64 * elapsed.as_secs_f64();
        let body_stalled = x.body.in_progress()
            && (too_slow || now.duration_since(x.last_read) > s.client_body_timeout);
        // Only the workers' silence counts: not a client too slow to take what they sent.
        let waiting_upstream = !matches!(x.response, Response::Done { .. })
            && self.output.len() < BUF_CAP
            && x.from_upstream.len() < BUF_CAP
            && !self.tls.wants_write();
        let upstream_stalled =
            waiting_upstream && now.duration_since(x.last_upstream) > s.upstream_read_timeout;
        let (status, message, level) = if connecting {
            (
                504,
                format!(
                    "upstream {} timed out connecting, client: {client}",
                    s.upstream
                ),
                Level::Error,
            )
        } else if body_stalled {
            (
                408,
                format!("client {client} timed out sending the request body"),
                Level::Info,
            )
        } else if upstream_stalled {
            (
                504,
                format!(
                    "upstream {} timed out reading the response, client: {client}",
                    s.upstream
                ),
                Level::Error,
            )
        } else {
            return Ok(());
        };
        ctx.log.log(level, &message);
        self.fail(ctx, None, status).map(|_| ())
    }

    /// Release both sockets; log an exchange cut short (499: the client went away).
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        if let State::Proxy(x) = &self.state {
            let status = if x.status == 0 { 499 } else { x.status };
            self.log_access(ctx, &x.info, status, x.body_sent);
        }
        self.drop_upstream(ctx);
        let _ = ctx.registry.deregister(&mut self.sock);
        self.state = State::Lingering { until: ctx.now };
    }

    fn log_access(&self, ctx: &Ctx<'_>, info: &RequestInfo, status: u16, body_bytes: u64) {
        ctx.log.access(&AccessEntry {
            remote: self.peer.ip(),
            request_line: &info.request_line,
            status,
            body_bytes,
            referer: &info.referer,
            user_agent: &info.user_agent,
        });
    }
}

/// The client socket as rustls reads it, noting a read that returned less than asked:
/// the socket is drained, and reading again before the next event would only say
/// `WouldBlock`.
struct ShortRead<'a> {
    sock: &'a mut TcpStream,
    drained: bool,
}

impl io::Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if n < buf.len() {
            self.drained = true;
        }
        Ok(n)
    }
}

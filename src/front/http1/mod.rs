//! The HTTP/1 exchange of one client connection: request heads parsed from the plaintext
//! by the workers' strict parser, the queue of exchanges in flight (pipelined requests
//! are parsed ahead and forwarded together, up to [`MAX_PIPELINE`]), request bodies
//! re-framed for the workers, and responses re-framed for the client in request order.
//!
//! Pure buffer work, no sockets: the transport ([`super::transport`]) moves the plaintext
//! in and out, the relay ([`super::relay`]) hands the forwarded bytes to an upstream
//! connection and feeds the response events ([`Session::on_head`], [`Session::on_data`],
//! [`Session::on_end`]) back.

use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rgunicorn_http::{
    parse_request_head, BodyDecoder, Framing, RequestHead, ResponseHead, Version, LAST_CHUNK,
};

use super::buffer::{ByteQueue, BUF_CAP};
use super::context::Key;
use super::headers;
use super::log::{AccessEntry, Logger};
use super::output::Output;
use super::settings::{FrontSettings, MIN_RATE_GRACE};

/// The largest request head the front reads (nginx's large_client_header_buffers is 4×8k).
pub const HEAD_CAP: usize = 64 * 1024;
/// Requests of one client parsed ahead and in flight at once.
pub const MAX_PIPELINE: usize = 32;
/// Times a request is sent before the front gives up on it (the first try included).
pub const MAX_ATTEMPTS: u8 = 3;
/// While draining, how long an idle keep-alive connection may still bring one more
/// request (answered with `Connection: close`) before it is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(500);

/// What the access log needs about a request: the request line, `Referer` and
/// `User-Agent`, in one string (one allocation per request).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    text: String,
    referer_at: usize,
    agent_at: usize,
}

impl RequestInfo {
    pub fn of(head: &RequestHead<'_>) -> RequestInfo {
        let field = |name| {
            head.fields
                .get(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("")
        };
        let (referer, agent) = (field("referer"), field("user-agent"));
        let mut text = String::with_capacity(head.line.len() + referer.len() + agent.len());
        text.push_str(head.line);
        text.push_str(referer);
        text.push_str(agent);
        RequestInfo {
            text,
            referer_at: head.line.len(),
            agent_at: head.line.len() + referer.len(),
        }
    }

    pub fn request_line(&self) -> &str {
        &self.text[..self.referer_at]
    }

    pub fn referer(&self) -> &str {
        &self.text[self.referer_at..self.agent_at]
    }

    pub fn user_agent(&self) -> &str {
        &self.text[self.agent_at..]
    }
}

/// The request body still to come from the client.
#[derive(Debug)]
pub enum RequestBody {
    /// Read with the decoder the workers read bodies with (`rgunicorn_http`).
    Receiving(Box<BodyDecoder>),
    /// All of it has been taken from the client.
    Done,
    /// The workers answered before reading it all; the connection closes after.
    Abandoned,
}

impl RequestBody {
    pub fn in_progress(&self) -> bool {
        matches!(self, RequestBody::Receiving(_))
    }
}

/// Where the response to an exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Nothing written to the client yet.
    Awaiting,
    /// The head is out; the body goes out in this framing.
    Body(Framing),
    /// The front answers this one itself (an error page), once it is first in line.
    Local(u16),
    Done,
}

/// One request and its response.
#[derive(Debug)]
pub struct Exchange {
    /// Unique within the event loop: upstream connections name exchanges by it.
    pub id: u64,
    pub info: RequestInfo,
    pub head_request: bool,
    pub version: Version,
    /// The client may keep the connection after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` still to be answered once this exchange is first in line.
    pub expect_continue: bool,
    pub started: Instant,
    pub body: RequestBody,
    pub body_received: u64,
    /// Last time request body bytes arrived.
    pub last_read: Instant,
    /// The head forwarded to the workers, kept while the request may be sent again: with
    /// the whole body appended once it has all arrived (the relay does so when it sends
    /// the request), emptied when the body is still coming as it is sent.
    pub head: Vec<u8>,
    /// Whether the request may be sent again after a connection closed before any byte
    /// of its answer (RFC 9110 9.2.2: an idempotent method, and no body to replay).
    pub idempotent: bool,
    pub attempts: u8,
    /// Re-framed request body for the workers, not yet handed to the upstream.
    pub body_out: ByteQueue,
    /// The upstream connection carrying it, once sent.
    pub upstream: Option<Key>,
    pub answer: Answer,
    pub status: u16,
    pub body_sent: u64,
    /// The workers gave the response (the front passed it on whole).
    pub answered_by_upstream: bool,
    /// The client connection closes after this response.
    pub close_after: bool,
}

impl Exchange {
    /// Waiting to be handed to an upstream connection.
    pub fn unsent(&self) -> bool {
        self.upstream.is_none() && self.answer == Answer::Awaiting
    }

    /// May be sent again on another connection (nothing of the answer has reached the
    /// client, the whole request is still at hand, tries are left).
    pub fn replayable(&self) -> bool {
        self.answer == Answer::Awaiting
            && !self.head.is_empty()
            && matches!(self.body, RequestBody::Done)
            && self.attempts < MAX_ATTEMPTS
    }
}

/// What the connection is reading.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// Between requests: no byte of the next head yet (since the last answer, or since
    /// the accept while the TLS handshake runs).
    Idle { since: Instant },
    /// A request head is arriving; its first byte came at `since`.
    Head { since: Instant },
    /// The last exchange's body is arriving.
    Body,
    /// No further request is read (close asked, an error answered, the client gone).
    Stopped,
}

/// The connection must close now (a response cut short, or nothing left to say).
#[derive(Debug)]
pub struct Close;

/// A deadline the session missed.
#[derive(Debug, PartialEq, Eq)]
pub enum Missed {
    /// Close silently (idle keep-alive, a handshake that never finished).
    Close,
    /// The request head or body is too slow: 408 was queued.
    Answered408,
}

pub struct Session {
    pub exchanges: VecDeque<Exchange>,
    reading: Reading,
    /// The client's address, written as text once per connection: it goes into each
    /// request's forwarded headers and access line.
    peer: String,
    /// Exchanges the front answered itself after sending them upstream (a body that
    /// stalled): the relay tells their upstream connections to forget them.
    pub detached: Vec<(Key, u64)>,
}

impl Session {
    pub fn new(peer: IpAddr, now: Instant) -> Session {
        Session {
            exchanges: VecDeque::new(),
            // The handshake counts against the header timeout, as nginx's does.
            reading: Reading::Head { since: now },
            peer: peer.to_string(),
            detached: Vec::new(),
        }
    }

    /// How much plaintext the transport should hold for us.
    pub fn input_cap(&self) -> usize {
        match self.reading {
            Reading::Body => BUF_CAP,
            _ => HEAD_CAP,
        }
    }

    /// No further request will be read.
    pub fn stopped(&self) -> bool {
        matches!(self.reading, Reading::Stopped)
    }

    /// Everything asked has been answered and nothing more will be.
    pub fn finished(&self) -> bool {
        self.stopped() && self.exchanges.is_empty()
    }

    /// Parse requests and move body bytes from `input`; write what is first in line to
    /// `output`. `handshaking`: the TLS handshake is still on. `peer_done`: the client
    /// ended its side. `ids` numbers new exchanges.
    #[allow(clippy::too_many_arguments)]
    pub fn advance(
        &mut self,
        input: &mut ByteQueue,
        output: &mut Output,
        handshaking: bool,
        peer_done: bool,
        settings: &FrontSettings,
        log: &Logger,
        ids: &mut u64,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        loop {
            let step = match self.reading {
                Reading::Idle { .. } | Reading::Head { .. } if handshaking => false,
                Reading::Idle { .. } if !input.is_empty() => {
                    self.reading = Reading::Head { since: now };
                    true
                }
                Reading::Head { .. } if self.exchanges.len() < MAX_PIPELINE => {
                    self.parse_head(input, output, peer_done, settings, ids, now)
                }
                Reading::Body => self.take_body(input, log, now),
                _ => false,
            };
            let wrote = self.write_local(output, settings, log);
            if !(step || wrote) {
                break;
            }
            progress = true;
        }
        if peer_done && !self.stopped() {
            match self.reading {
                // The client left in the middle of a request: nothing to answer there.
                Reading::Head { .. } | Reading::Body if !handshaking => {
                    if let Some(last) = self.exchanges.back_mut() {
                        if last.body.in_progress() {
                            last.body = RequestBody::Abandoned;
                        }
                    }
                }
                _ => {}
            }
            self.reading = Reading::Stopped;
            progress = true;
        }
        progress
    }

    fn parse_head(
        &mut self,
        input: &mut ByteQueue,
        output: &mut Output,
        peer_done: bool,
        settings: &FrontSettings,
        ids: &mut u64,
        now: Instant,
    ) -> bool {
        let limits = &settings.limits;
        let head = match parse_request_head(input.as_slice(), limits) {
            Err(err) => return self.refuse(RequestInfo::default(), err.status(), now),
            Ok(None) if input.len() >= HEAD_CAP => {
                return self.refuse(RequestInfo::default(), 431, now)
            }
            Ok(None) => {
                if peer_done {
                    self.reading = Reading::Stopped;
                    return true;
                }
                return false;
            }
            Ok(Some(head)) => head,
        };
        // Everything wanted from the head, before the input moves on.
        let info = RequestInfo::of(&head);
        let body = match head.body {
            Framing::NoBody | Framing::Length(0) => RequestBody::Done,
            framing => match BodyDecoder::request(framing, limits, settings.client_max_body_size) {
                Ok(decoder) => RequestBody::Receiving(Box::new(decoder)),
                Err(err) => return self.refuse(info, err.status(), now),
            },
        };
        let mut forwarded = Vec::with_capacity(512);
        headers::upstream_request(&head, &self.peer, settings, &mut forwarded);
        let (head_len, head_request, version) = (head.head_len, head.is_head(), head.version);
        let (keep_alive, expect_continue) = (head.keep_alive, head.expect_continue);
        let idempotent = idempotent(head.method);
        input.consume(head_len);
        *ids += 1;
        let in_progress = body.in_progress();
        let exchange = Exchange {
            id: *ids,
            info,
            head_request,
            version,
            keep_alive,
            expect_continue: expect_continue && in_progress,
            started: now,
            idempotent: !in_progress && idempotent,
            body,
            body_received: 0,
            last_read: now,
            head: forwarded,
            attempts: 0,
            body_out: ByteQueue::default(),
            upstream: None,
            answer: Answer::Awaiting,
            status: 0,
            body_sent: 0,
            answered_by_upstream: false,
            close_after: !keep_alive,
        };
        self.exchanges.push_back(exchange);
        self.reading = if in_progress {
            Reading::Body
        } else if keep_alive {
            Reading::Idle { since: now }
        } else {
            // Nothing after a request that closes the connection is read (RFC 9112 9.6).
            Reading::Stopped
        };
        self.continue_if_first(output);
        true
    }

    /// Answer `status` for a request the front will not forward, after the earlier ones.
    fn refuse(&mut self, info: RequestInfo, status: u16, now: Instant) -> bool {
        self.exchanges.push_back(Exchange {
            id: 0,
            info,
            head_request: false,
            version: Version::Http11,
            keep_alive: false,
            expect_continue: false,
            started: now,
            body: RequestBody::Done,
            body_received: 0,
            last_read: now,
            head: Vec::new(),
            idempotent: false,
            attempts: 0,
            body_out: ByteQueue::default(),
            upstream: None,
            answer: Answer::Local(status),
            status,
            body_sent: 0,
            answered_by_upstream: false,
            close_after: true,
        });
        self.reading = Reading::Stopped;
        true
    }

    /// `100 Continue` for the first exchange, once it is first and still wants its body.
    fn continue_if_first(&mut self, output: &mut Output) {
        if let Some(first) = self.exchanges.front_mut() {
            if first.expect_continue && first.answer == Answer::Awaiting {
                first.expect_continue = false;
                if first.body.in_progress() {
                    output.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
            }
        }
    }

    /// Request body bytes from `input` into the last exchange's `body_out`.
    fn take_body(&mut self, input: &mut ByteQueue, log: &Logger, now: Instant) -> bool {
        let Some(x) = self.exchanges.back_mut() else {
            self.reading = Reading::Stopped;
            return true;
        };
        let room = BUF_CAP.saturating_sub(x.body_out.len());
        if room == 0 || input.is_empty() {
            if !x.body.in_progress() {
                self.after_body();
                return true;
            }
            return false;
        }
        let RequestBody::Receiving(decoder) = &mut x.body else {
            return false;
        };
        let step = match decoder.next_capped(input.as_slice(), room) {
            Ok(step) => step,
            Err(err) => {
                let status = err.status();
                return self.body_failed(status, &err.to_string(), log);
            }
        };
        if decoder.framing() == Framing::Chunked {
            encode_chunk(step.data, &mut x.body_out);
            if step.done {
                x.body_out.extend(LAST_CHUNK);
            }
        } else {
            x.body_out.extend(step.data);
        }
        let (consumed, done) = (step.consumed, step.done);
        x.body_received = decoder.received();
        input.consume(consumed);
        if done {
            x.body = RequestBody::Done;
        } else if consumed == 0 {
            return false;
        }
        x.last_read = now;
        if !x.body.in_progress() {
            self.after_body();
        }
        true
    }

    fn after_body(&mut self) {
        let keep = self.exchanges.back().is_some_and(|x| x.keep_alive);
        self.reading = if keep {
            Reading::Idle {
                since: Instant::now(),
            }
        } else {
            Reading::Stopped
        };
    }

    /// The body being received is bad (400) or too large (413).
    fn body_failed(&mut self, status: u16, why: &str, log: &Logger) -> bool {
        log.info(&format!("client {}: request body {why}", self.peer));
        if let Some(id) = self.exchanges.back().map(|x| x.id) {
            let _ = self.fail(id, status);
        }
        true
    }

    /// Write local answers (error pages) that are first in line. Returns whether any was.
    fn write_local(&mut self, output: &mut Output, settings: &FrontSettings, log: &Logger) -> bool {
        let mut wrote = false;
        while let Some(Answer::Local(status)) = self.exchanges.front().map(|x| x.answer) {
            let Some(mut x) = self.exchanges.pop_front() else {
                break;
            };
            x.body_sent = headers::error_response(status, x.head_request, settings, output);
            x.status = status;
            log_access(log, &self.peer, &x);
            // An error page always closes: nothing queued after it is answered.
            self.exchanges.clear();
            self.reading = Reading::Stopped;
            wrote = true;
        }
        wrote
    }

    /// The exchange `id` cannot be answered by the workers: answer `status` instead.
    /// `Err` when part of its response already went out (the connection must close).
    /// Returns the exchanges dropped behind it (their upstreams must forget them).
    pub fn fail(&mut self, id: u64, status: u16) -> Result<Vec<Exchange>, Close> {
        let Some(pos) = self.exchanges.iter().position(|x| x.id == id) else {
            return Ok(Vec::new());
        };
        let x = &mut self.exchanges[pos];
        if !matches!(x.answer, Answer::Awaiting | Answer::Local(_)) {
            return Err(Close);
        }
        x.answer = Answer::Local(status);
        if let Some(up) = x.upstream.take() {
            self.detached.push((up, id));
        }
        x.close_after = true;
        self.reading = Reading::Stopped;
        Ok(self.exchanges.drain(pos + 1..).collect())
    }

    /// The worker handed exchange `id` back unstarted: it waits for another connection
    /// (a new one: it has been sent before).
    pub fn resend(&mut self, id: u64) {
        if let Some(x) = self.exchanges.iter_mut().find(|x| x.id == id) {
            if x.answer == Answer::Awaiting {
                x.upstream = None;
            }
        }
    }

    /// Position of the exchange a response event is for, if it is first in line.
    fn first(&mut self, id: u64) -> Option<&mut Exchange> {
        self.exchanges.front_mut().filter(|x| x.id == id)
    }

    /// Whether `id` is still waiting for (or receiving) its answer.
    pub fn knows(&self, id: u64) -> bool {
        self.exchanges.iter().any(|x| x.id == id)
    }

    /// Whether a response event for `id` can be taken now: it is first in line and the
    /// client's output holds less than `limit`. (Responses of one client come back in
    /// order.)
    pub fn can_take(&self, id: u64, output: &Output, limit: usize) -> bool {
        self.exchanges.front().is_some_and(|x| x.id == id) && output.len() < limit
    }

    /// The response head for `id` arrived: write the client's head.
    pub fn on_head(
        &mut self,
        id: u64,
        head: &ResponseHead<'_>,
        output: &mut Output,
        settings: &FrontSettings,
        draining: bool,
    ) {
        let Some(x) = self.first(id) else {
            return;
        };
        // A body of unknown length goes re-chunked to an HTTP/1.1 client, until close to
        // an HTTP/1.0 one.
        let client = match head.framing {
            Framing::Chunked | Framing::UntilClose if x.version == Version::Http11 => {
                Framing::Chunked
            }
            Framing::Chunked | Framing::UntilClose => Framing::UntilClose,
            framing => framing,
        };
        // Keep the client only when this response is framed and its whole request has
        // been read: otherwise the next bytes are ambiguous.
        let keep = x.keep_alive
            && !draining
            && !x.close_after
            && client != Framing::UntilClose
            && matches!(x.body, RequestBody::Done);
        x.close_after = !keep;
        x.status = head.status;
        x.answer = Answer::Body(client);
        headers::client_response(head, client, keep, x.version, settings, output);
    }

    /// Response body bytes for `id`: returns how many were taken (the output holds at
    /// most `limit`).
    pub fn on_data(&mut self, id: u64, data: &[u8], output: &mut Output, limit: usize) -> usize {
        let room = limit.saturating_sub(output.len());
        let Some(x) = self.first(id) else {
            return data.len();
        };
        let n = data.len().min(room);
        if let Answer::Body(framing) = x.answer {
            match framing {
                Framing::Chunked => encode_chunk(&data[..n], output),
                Framing::NoBody => {}
                _ => output.extend(&data[..n]),
            }
            x.body_sent += n as u64;
        }
        n
    }

    /// The response for `id` is complete.
    pub fn on_end(&mut self, id: u64, output: &mut Output, log: &Logger, now: Instant) {
        let Some(x) = self.first(id) else {
            return;
        };
        if x.answer == Answer::Body(Framing::Chunked) {
            output.extend(LAST_CHUNK);
        }
        x.answer = Answer::Done;
        x.answered_by_upstream = true;
        // The workers answered before the whole body came (a 408 or 413 of theirs).
        let cut_off = x.body.in_progress();
        let timed_out = cut_off && x.status == 408;
        if cut_off {
            x.body = RequestBody::Abandoned;
            x.close_after = true;
        }
        if timed_out {
            log.info(&format!(
                "client {} timed out sending the request body",
                self.peer
            ));
        }
        let Some(x) = self.exchanges.pop_front() else {
            return;
        };
        log_access(log, &self.peer, &x);
        if x.close_after {
            self.exchanges.clear();
            self.reading = Reading::Stopped;
        } else if self.exchanges.is_empty() {
            if let Reading::Idle { .. } = self.reading {
                self.reading = Reading::Idle { since: now };
            }
        }
        self.continue_if_first(output);
    }

    /// The exchange being answered lost its upstream after its head went out: what
    /// the client got is all it gets, and the connection closes.
    pub fn cut_short(&mut self, log: &Logger) {
        if let Some(x) = self.exchanges.pop_front() {
            log_access(log, &self.peer, &x);
        }
        self.exchanges.clear();
        self.reading = Reading::Stopped;
    }

    /// Log the exchange cut short by the connection's end (499: the client went away).
    pub fn log_unfinished(&self, log: &Logger) {
        if let Some(x) = self.exchanges.front() {
            if matches!(x.answer, Answer::Awaiting | Answer::Body(_)) {
                log.access(&AccessEntry {
                    remote: &self.peer,
                    request_line: x.info.request_line(),
                    status: if x.status == 0 { 499 } else { x.status },
                    body_bytes: x.body_sent,
                    referer: x.info.referer(),
                    user_agent: x.info.user_agent(),
                    from_upstream: false,
                });
            }
        }
    }

    /// Enforce the header, keep-alive and body deadlines.
    pub fn check_deadlines(
        &mut self,
        handshaking: bool,
        settings: &FrontSettings,
        log: &Logger,
        draining: bool,
        now: Instant,
    ) -> Option<Missed> {
        match self.reading {
            Reading::Idle { since } if self.exchanges.is_empty() => {
                let idle = now.saturating_duration_since(since);
                if handshaking && idle > settings.client_header_timeout
                    || idle > settings.keepalive_timeout
                    || draining && idle > DRAIN_IDLE_GRACE
                {
                    return Some(Missed::Close);
                }
                None
            }
            Reading::Head { since }
                if now.saturating_duration_since(since) > settings.client_header_timeout =>
            {
                if handshaking {
                    return Some(Missed::Close);
                }
                log.info(&format!(
                    "client {} timed out sending the request head",
                    self.peer
                ));
                self.refuse(RequestInfo::default(), 408, now);
                Some(Missed::Answered408)
            }
            Reading::Body => {
                let x = self.exchanges.back()?;
                if !body_too_slow(x, settings, now) {
                    return None;
                }
                log.info(&format!(
                    "client {} timed out sending the request body",
                    self.peer
                ));
                let id = x.id;
                match self.fail(id, 408) {
                    Ok(_) => Some(Missed::Answered408),
                    Err(Close) => Some(Missed::Close),
                }
            }
            _ => None,
        }
    }
}

/// The workers' rule (`min_body_rate` after a 5 s grace, no pause longer than the
/// body timeout), applied by the front itself so it answers 408 before they do.
fn body_too_slow(x: &Exchange, settings: &FrontSettings, now: Instant) -> bool {
    let elapsed = now.saturating_duration_since(x.started);
    let rate = settings.client_body_min_rate;
    let wanted = (elapsed.saturating_sub(MIN_RATE_GRACE).as_secs_f64() * rate as f64) as u64;
    rate > 0 && elapsed > MIN_RATE_GRACE && x.body_received < wanted
        || now.saturating_duration_since(x.last_read) > settings.client_body_timeout
}

/// RFC 9110 9.2.2: methods a client (or proxy) may send again after a failure.
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

fn log_access(log: &Logger, peer: &str, x: &Exchange) {
    log.access(&AccessEntry {
        remote: peer,
        request_line: x.info.request_line(),
        status: x.status,
        body_bytes: x.body_sent,
        referer: x.info.referer(),
        user_agent: x.info.user_agent(),
        from_upstream: x.answered_by_upstream,
    });
}

/// Re-encode `data` as one chunk (nothing for empty data: that would end the body): what
/// `rgunicorn_http::push_chunk` does, into a queue rather than a `Vec`.
pub fn encode_chunk(data: &[u8], out: &mut impl Write) {
    if !data.is_empty() {
        // Both queues take every byte they are given.
        let _ = write!(out, "{:x}\r\n", data.len());
        let _ = out.write_all(data);
        let _ = out.write_all(b"\r\n");
    }
}

#[cfg(test)]
mod tests;

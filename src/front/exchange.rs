//! One request/response crossing the front: the state of the request body still coming
//! from the client, the bytes queued for the workers, and the response coming back.
//! Pure buffer work, no sockets: [`super::conn`] moves the bytes in and out.

use std::io::Write;
use std::time::Instant;

use rgunicorn_workers::http::{
    BodyKind, ChunkedDecoder, DecodeProgress, ParseError, RequestHead, Version,
};

use super::headers::{self, ClientFraming};
use super::settings::FrontSettings;
use super::upstream::{parse_response_head, ChunkDecoder, Framing, UpstreamError};

/// Each streaming buffer holds at most about this much (memory bound per connection).
pub const BUF_CAP: usize = 32 * 1024;

/// What the access log needs about a request.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub request_line: String,
    pub referer: String,
    pub user_agent: String,
}

impl RequestInfo {
    pub fn of(head: &RequestHead) -> RequestInfo {
        let version = match head.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        RequestInfo {
            request_line: format!("{} {} {}", head.method, head.target, version),
            referer: headers::header(head, "referer").unwrap_or("").to_string(),
            user_agent: headers::header(head, "user-agent")
                .unwrap_or("")
                .to_string(),
        }
    }
}

/// The request body still to come from the client.
#[derive(Debug)]
pub enum RequestBody {
    Length {
        left: u64,
    },
    Chunked(Box<ChunkedDecoder>),
    /// All of it has been queued for the workers.
    Done,
    /// The workers stopped reading it (they answered early); the client connection closes
    /// after the response.
    Abandoned,
}

impl RequestBody {
    pub fn in_progress(&self) -> bool {
        matches!(self, RequestBody::Length { .. } | RequestBody::Chunked(_))
    }
}

/// The response as it comes back from the workers.
#[derive(Debug)]
pub enum Response {
    AwaitingHead,
    Body {
        body: ResponseBody,
        client: ClientFraming,
        /// The workers will close their side after this response.
        upstream_close: bool,
    },
    Done {
        upstream_reusable: bool,
    },
}

#[derive(Debug)]
pub enum ResponseBody {
    Length {
        left: u64,
    },
    Chunked(ChunkDecoder),
    UntilClose,
    /// The workers closed after an until-close body: what is buffered is the rest.
    Rest,
}

/// Why an exchange cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("request body: {0}")]
    RequestBody(ParseError),
    #[error("request body larger than client_max_body_size")]
    BodyTooLarge,
    #[error("upstream response: {0}")]
    Upstream(#[from] UpstreamError),
}

impl ExchangeError {
    /// The status the client gets when no response has started yet.
    pub fn status(&self) -> u16 {
        match self {
            ExchangeError::RequestBody(err) => err.status(),
            ExchangeError::BodyTooLarge => 413,
            ExchangeError::Upstream(_) => 502,
        }
    }
}

#[derive(Debug)]
pub struct Exchange {
    pub info: RequestInfo,
    pub head_request: bool,
    pub version: Version,
    /// The client may keep the connection after this exchange.
    pub keep_alive: bool,
    pub started: Instant,
    pub body: RequestBody,
    pub body_received: u64,
    /// Last time request body bytes arrived.
    pub last_read: Instant,
    /// Framed bytes for the workers, not yet written.
    pub to_upstream: Vec<u8>,
    /// The forwarded head, kept while the request can be replayed on a fresh connection
    /// (no body, nothing received yet): a reused keep-alive connection may have been
    /// closed by the worker just as we sent.
    pub replay: Option<Vec<u8>>,
    pub attempts: u8,
    /// Bytes from the workers not yet processed.
    pub from_upstream: Vec<u8>,
    /// Last time the workers' socket made progress.
    pub last_upstream: Instant,
    pub response: Response,
    pub status: u16,
    pub body_sent: u64,
    /// The client connection closes after this response.
    pub close_after: bool,
}

impl Exchange {
    /// Start the exchange for `head` (already removed from the input buffer): validate the
    /// body size, queue the forwarded head. Returns the status to answer when refused.
    pub fn start(
        head: &RequestHead,
        client: std::net::IpAddr,
        settings: &FrontSettings,
        now: Instant,
    ) -> Result<Exchange, (RequestInfo, u16)> {
        let info = RequestInfo::of(head);
        let max = settings.client_max_body_size;
        let body = match head.body {
            BodyKind::None | BodyKind::Length(0) => RequestBody::Done,
            BodyKind::Length(n) if max > 0 && n > max => return Err((info, 413)),
            BodyKind::Length(n) => RequestBody::Length { left: n },
            BodyKind::Chunked => RequestBody::Chunked(Box::new(ChunkedDecoder::new())),
        };
        let mut to_upstream = Vec::with_capacity(1024);
        headers::upstream_request(head, client, settings, &mut to_upstream);
        let replay = matches!(body, RequestBody::Done).then(|| to_upstream.clone());
        Ok(Exchange {
            info,
            head_request: head.method == "HEAD",
            version: head.version,
            keep_alive: head.keep_alive,
            started: now,
            body,
            body_received: 0,
            last_read: now,
            to_upstream,
            replay,
            attempts: 1,
            from_upstream: Vec::new(),
            last_upstream: now,
            response: Response::AwaitingHead,
            status: 0,
            body_sent: 0,
            close_after: false,
        })
    }

    /// Move request body bytes from `input` (client plaintext) to the upstream queue.
    pub fn take_body(
        &mut self,
        input: &mut Vec<u8>,
        max: u64,
        now: Instant,
    ) -> Result<bool, ExchangeError> {
        let room = BUF_CAP.saturating_sub(self.to_upstream.len());
        if room == 0 || input.is_empty() {
            return Ok(false);
        }
        match &mut self.body {
            RequestBody::Length { left } => {
                let n = (*left).min(input.len() as u64).min(room as u64) as usize;
                self.to_upstream.extend_from_slice(&input[..n]);
                input.drain(..n);
                *left -= n as u64;
                self.body_received += n as u64;
                if *left == 0 {
                    self.body = RequestBody::Done;
                }
            }
            RequestBody::Chunked(decoder) => {
                let take = input.len().min(room);
                let mut data = Vec::with_capacity(take);
                let (consumed, progress) = decoder
                    .decode(&input[..take], &mut data)
                    .map_err(ExchangeError::RequestBody)?;
                input.drain(..consumed);
                self.body_received += data.len() as u64;
                if max > 0 && self.body_received > max {
                    return Err(ExchangeError::BodyTooLarge);
                }
                encode_chunk(&data, &mut self.to_upstream);
                if progress == DecodeProgress::Done {
                    self.to_upstream.extend_from_slice(b"0\r\n\r\n");
                    self.body = RequestBody::Done;
                }
                if consumed == 0 {
                    return Ok(false);
                }
            }
            RequestBody::Done | RequestBody::Abandoned => return Ok(false),
        }
        self.last_read = now;
        Ok(true)
    }

    /// Turn bytes from the workers into bytes for the client (`out`, bounded by BUF_CAP).
    pub fn give_response(
        &mut self,
        out: &mut Vec<u8>,
        settings: &FrontSettings,
        draining: bool,
    ) -> Result<bool, ExchangeError> {
        let mut progress = false;
        loop {
            match &mut self.response {
                Response::AwaitingHead => {
                    let Some(head) = parse_response_head(&self.from_upstream, self.head_request)?
                    else {
                        return Ok(progress);
                    };
                    self.from_upstream.drain(..head.head_len);
                    progress = true;
                    if (100..200).contains(&head.status) {
                        // Interim responses (100 Continue) are the front's business with
                        // its own client; it answered those itself.
                        continue;
                    }
                    let client = match head.framing {
                        Framing::None => ClientFraming::None,
                        Framing::Length(n) => ClientFraming::Length(n),
                        Framing::Chunked | Framing::UntilClose
                            if self.version == Version::Http11 =>
                        {
                            ClientFraming::Chunked
                        }
                        Framing::Chunked | Framing::UntilClose => ClientFraming::UntilClose,
                    };
                    // Keep the client only when this response is framed and its whole
                    // request has been read: otherwise the next bytes are ambiguous.
                    let keep = self.keep_alive
                        && !draining
                        && !self.close_after
                        && client != ClientFraming::UntilClose
                        && matches!(self.body, RequestBody::Done);
                    self.close_after = !keep;
                    self.status = head.status;
                    headers::client_response(&head, client, keep, self.version, settings, out);
                    self.response = match head.framing {
                        Framing::None => Response::Done {
                            upstream_reusable: !head.close,
                        },
                        Framing::Length(0) => Response::Done {
                            upstream_reusable: !head.close,
                        },
                        Framing::Length(n) => Response::Body {
                            body: ResponseBody::Length { left: n },
                            client,
                            upstream_close: head.close,
                        },
                        Framing::Chunked => Response::Body {
                            body: ResponseBody::Chunked(ChunkDecoder::default()),
                            client,
                            upstream_close: head.close,
                        },
                        Framing::UntilClose => Response::Body {
                            body: ResponseBody::UntilClose,
                            client,
                            upstream_close: true,
                        },
                    };
                }
                Response::Body {
                    body,
                    client,
                    upstream_close,
                } => {
                    let room = BUF_CAP.saturating_sub(out.len());
                    if room == 0 || self.from_upstream.is_empty() {
                        return Ok(progress);
                    }
                    let (consumed, done) = match body {
                        ResponseBody::Length { left } => {
                            let n = (*left)
                                .min(self.from_upstream.len() as u64)
                                .min(room as u64) as usize;
                            out.extend_from_slice(&self.from_upstream[..n]);
                            self.body_sent += n as u64;
                            *left -= n as u64;
                            (n, *left == 0)
                        }
                        ResponseBody::Chunked(decoder) => {
                            let mut data = Vec::new();
                            let n = decoder.decode(&self.from_upstream, &mut data, room)?;
                            self.body_sent += data.len() as u64;
                            emit(&data, *client, out);
                            (n, decoder.is_done())
                        }
                        ResponseBody::UntilClose | ResponseBody::Rest => {
                            let n = self.from_upstream.len().min(room);
                            self.body_sent += n as u64;
                            emit(&self.from_upstream[..n], *client, out);
                            let rest = matches!(body, ResponseBody::Rest);
                            (n, rest && n == self.from_upstream.len())
                        }
                    };
                    self.from_upstream.drain(..consumed);
                    progress |= consumed > 0;
                    if done {
                        let reusable = !*upstream_close;
                        self.finish_body(out, reusable);
                    } else if consumed == 0 {
                        return Ok(progress);
                    }
                }
                Response::Done { .. } => return Ok(progress),
            }
        }
    }

    /// The workers closed their side: the end of an until-close body, or an error.
    /// Returns whether the response is now complete.
    pub fn upstream_eof(&mut self, out: &mut Vec<u8>) -> bool {
        match &mut self.response {
            Response::Body {
                body: ResponseBody::UntilClose,
                ..
            } if self.from_upstream.is_empty() => {
                self.finish_body(out, false);
                true
            }
            Response::Body { body, .. } if matches!(body, ResponseBody::UntilClose) => {
                // The client has not taken everything yet: finish once it has.
                *body = ResponseBody::Rest;
                true
            }
            Response::Done { .. } => true,
            _ => false,
        }
    }

    fn finish_body(&mut self, out: &mut Vec<u8>, upstream_reusable: bool) {
        if let Response::Body {
            client: ClientFraming::Chunked,
            ..
        } = self.response
        {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        self.response = Response::Done { upstream_reusable };
    }

    /// Nothing of the response has reached the client yet (an error page may still go).
    pub fn response_unstarted(&self) -> bool {
        matches!(self.response, Response::AwaitingHead)
    }

    /// The exchange is over: response complete and request body no longer expected.
    pub fn finished(&self) -> bool {
        matches!(self.response, Response::Done { .. })
            && (!self.body.in_progress() || self.close_after)
    }

    /// The upstream connection can serve another request.
    pub fn upstream_reusable(&self) -> bool {
        matches!(
            self.response,
            Response::Done {
                upstream_reusable: true
            }
        ) && matches!(self.body, RequestBody::Done)
            && self.to_upstream.is_empty()
            && self.from_upstream.is_empty()
    }
}

/// Re-encode `data` as one chunk (nothing for empty data: that would end the body).
fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if !data.is_empty() {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

fn emit(data: &[u8], client: ClientFraming, out: &mut Vec<u8>) {
    match client {
        ClientFraming::Chunked => encode_chunk(data, out),
        _ => out.extend_from_slice(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(version: Version) -> Exchange {
        let now = Instant::now();
        Exchange {
            info: RequestInfo::default(),
            head_request: false,
            version,
            keep_alive: true,
            started: now,
            body: RequestBody::Done,
            body_received: 0,
            last_read: now,
            to_upstream: Vec::new(),
            replay: None,
            attempts: 1,
            from_upstream: Vec::new(),
            last_upstream: now,
            response: Response::AwaitingHead,
            status: 0,
            body_sent: 0,
            close_after: false,
        }
    }

    #[test]
    fn chunked_response_is_rechunked_and_reusable() {
        let settings = FrontSettings::default();
        let mut x = exchange(Version::Http11);
        x.from_upstream
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        let mut out = Vec::new();
        assert!(x.give_response(&mut out, &settings, false).expect("ok"));
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.ends_with("Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(x.finished() && x.upstream_reusable());
    }

    #[test]
    fn until_close_to_http10_client_closes() {
        let settings = FrontSettings::default();
        let mut x = exchange(Version::Http10);
        x.from_upstream
            .extend_from_slice(b"HTTP/1.0 200 OK\r\n\r\nhello");
        let mut out = Vec::new();
        x.give_response(&mut out, &settings, false).expect("ok");
        assert!(x.close_after);
        assert!(String::from_utf8_lossy(&out).ends_with("Connection: close\r\n\r\nhello"));
        assert!(x.upstream_eof(&mut out));
        assert!(x.finished() && !x.upstream_reusable());
    }
}

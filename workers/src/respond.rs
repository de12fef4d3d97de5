//! Running the app for one request and framing its answer as HTTP/1.1 bytes.
//!
//! Both paths use this: the event loop for inline apps, the app threads for the others.
//! What it cannot put in the output buffer at once (a streamed or file body) it hands
//! back as a [`BodySource`] for the loop to pull from.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::app::{App, Body, ChunkStream, Environ, Input, Response};
use crate::clock::with_http_date;
use crate::http::Version;
// HTTP vocabulary that lived here, now in rgunicorn-http: re-exported so paths hold.
pub use crate::http::{is_hop_by_hop, push_chunk, reason, Framing};
use crate::log::{AccessLog, AccessRecord};

/// Bodies up to this size are copied after the head, to go out in the same write;
/// larger ones are sent from their own buffer.
const COPY_BODY_MAX: usize = 64 * 1024;

/// What the loop knows about the request that shapes the response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    pub version: Version,
    pub is_head: bool,
    /// The client allows keep-alive and the server is willing.
    pub keep_alive: bool,
}

/// Where the rest of a body comes from once the head (and any bytes body) is written.
pub enum BodySource {
    /// An app's stream: an inline app's, pulled on the loop, or a threaded app's,
    /// pulled on its app thread (`crate::pool::Pulled`, which says `WouldBlock` until
    /// the thread has the next chunk).
    Iter(ChunkStream),
    /// A bytes body too large to copy into the output buffer, sent from its own.
    Bytes {
        data: Cow<'static, [u8]>,
        sent: usize,
    },
    /// A file, read on the loop `remaining` bytes at a time (None = to its end).
    File { file: File, remaining: Option<u64> },
}

/// The outcome of one exchange: whether the connection may be reused, and the body still to send.
pub struct Answer {
    pub keep_alive: bool,
    pub framing: Framing,
    pub rest: Option<BodySource>,
}

/// Call the app, catching a panic as a 500.
pub fn call_app(app: &dyn App, environ: &Environ, input: Input) -> Response {
    try_call_app(app, environ, input).unwrap_or_else(|| error_response(500))
}

/// Call the app; `None` when it panicked (logged here).
pub fn try_call_app(app: &dyn App, environ: &Environ, mut input: Input) -> Option<Response> {
    match catch_unwind(AssertUnwindSafe(|| app.call(environ, &mut input))) {
        Ok(response) => Some(response),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::log_exception!(
                "Error handling request {} {}: app panicked: {what}",
                environ.method,
                environ.raw_uri
            );
            None
        }
    }
}

/// What an app that failed after its head went out early ([`crate::pool::Reply`])
/// answers: a body that fails, so the loop closes the connection rather than frame the
/// body as whole.
pub fn cut_short() -> Response {
    let failed = std::iter::once(Err(std::io::Error::other(
        "the app failed after its response had started",
    )));
    Response::new(500, Vec::new(), Body::Stream(Box::new(failed)))
}

/// Everything a response is framed with besides the app's answer.
pub struct Exchange<'a> {
    pub environ: &'a Environ,
    pub ctx: ResponseContext,
    pub server: &'a str,
    pub started: Instant,
    pub access: Option<&'a AccessLog>,
}

/// A plain-text error page, as gunicorn sends for a bad request or a failing app.
pub fn error_response(status: u16) -> Response {
    let body = format!("{status} {}\n", reason(status)).into_bytes();
    Response::new(
        status,
        vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
        Body::Bytes(body),
    )
}

/// Frame `response` into `out`: status line, server headers, app headers (hop-by-hop
/// dropped), then the body when it is already bytes.
pub fn write_response(response: Response, ex: &Exchange, out: &mut Vec<u8>) -> Answer {
    let Exchange {
        environ,
        ctx,
        server,
        started,
        access,
    } = *ex;
    let Response {
        status,
        reason: app_reason,
        headers: mut kept,
        body,
    } = response;
    let mut keep_alive = ctx.keep_alive;
    let mut declared_len: Option<u64> = None;
    // Filtered in place, and only when something is to be dropped: an app's static list
    // (which holds none of these) is sent as it is, with no copy.
    if kept
        .iter()
        .any(|(name, value)| kind(name, value) != HeaderKind::Plain)
    {
        kept.to_mut()
            .retain(|(name, value)| match kind(name, value) {
                HeaderKind::Plain => true,
                HeaderKind::ContentLength => {
                    match value.trim().parse::<u64>() {
                        Ok(n) => declared_len = Some(n),
                        Err(_) => {
                            crate::log_warning!(
                                "app sent invalid Content-Length {value:?}: ignored"
                            )
                        }
                    }
                    false
                }
                HeaderKind::HopByHop => {
                    if name.eq_ignore_ascii_case("connection")
                        && value
                            .split(',')
                            .any(|t| t.trim().eq_ignore_ascii_case("close"))
                    {
                        keep_alive = false;
                    }
                    false
                }
                HeaderKind::Invalid => {
                    // A header that would split the response: refuse it rather than send it.
                    crate::log_error!("app sent an invalid header {name:?}: dropped");
                    false
                }
            });
    }

    let no_body_status = status < 200 || status == 204 || status == 304;
    let body = match body {
        // A file's length is known from the file: framed by Content-Length (and so
        // sendable with sendfile) rather than chunked.
        Body::File { file, len: None } => {
            let len = file_remaining(&file);
            Body::File { file, len }
        }
        other => other,
    };
    let length = declared_len.or_else(|| body.known_len());
    let framing = if no_body_status {
        Framing::NoBody
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if ctx.version == Version::Http11 {
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::UntilClose
    };

    let send_body = !ctx.is_head && framing != Framing::NoBody;
    // (A file's or a stream's mismatch shows as it is sent: see `conn`.)
    let in_memory = matches!(body, Body::Empty | Body::Static(_) | Body::Bytes(_));
    if let (true, true, Some(declared), Some(actual)) =
        (send_body, in_memory, declared_len, body.known_len())
    {
        if declared != actual {
            // The client would read the rest of the connection out of step with the
            // responses: send what was declared at most, then close.
            crate::log_warning!(
                "app declared Content-Length {declared} for a body of {actual} bytes: \
                 closing the connection after it"
            );
            keep_alive = false;
        }
    }

    out.extend_from_slice(ctx.version.as_str().as_bytes());
    out.push(b' ');
    push_u64(out, u64::from(status));
    out.push(b' ');
    push_reason(out, status, app_reason.as_deref());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(server.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    with_http_date(|date| out.extend_from_slice(date.as_bytes()));
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive".as_slice()
    } else {
        b"\r\nConnection: close".as_slice()
    });
    for (name, value) in kept.iter() {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    match framing {
        Framing::Length(n) if status != 204 => {
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_u64(out, n);
        }
        Framing::Chunked if !ctx.is_head => {
            out.extend_from_slice(b"\r\nTransfer-Encoding: chunked")
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n\r\n");

    if let Some(log) = access {
        log.log(&AccessRecord {
            environ,
            status,
            response_headers: &kept,
            length,
            duration: started.elapsed(),
        });
    }

    // A HEAD answer ends with its head, whatever the app's body would have been.
    let framing = if send_body { framing } else { Framing::NoBody };
    let rest = if !send_body {
        None
    } else {
        match body {
            Body::Empty => None,
            Body::Static(bytes) if bytes.len() <= COPY_BODY_MAX => {
                push_limited(out, bytes, framing);
                None
            }
            Body::Bytes(bytes) if bytes.len() <= COPY_BODY_MAX => {
                push_limited(out, &bytes, framing);
                None
            }
            // Larger bodies are sent from their own buffer, never copied whole.
            Body::Static(bytes) => Some(BodySource::bytes(Cow::Borrowed(bytes), framing)),
            Body::Bytes(bytes) => Some(BodySource::bytes(Cow::Owned(bytes), framing)),
            Body::Stream(stream) => Some(BodySource::Iter(stream)),
            Body::File { file, len } => Some(BodySource::File {
                file,
                remaining: len.or(declared_len),
            }),
        }
    };
    if framing == Framing::Chunked && rest.is_none() {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Answer {
        keep_alive,
        framing,
        rest,
    }
}

/// How an app's response header is treated.
#[derive(Debug, PartialEq, Eq)]
enum HeaderKind {
    /// Sent as the app gave it.
    Plain,
    /// Taken as the declared length; the server writes its own.
    ContentLength,
    /// The server's business (Connection, Transfer-Encoding, ...): dropped, though a
    /// `Connection: close` is honoured.
    HopByHop,
    /// Would split the response: dropped.
    Invalid,
}

fn kind(name: &str, value: &str) -> HeaderKind {
    if name.eq_ignore_ascii_case("content-length") {
        HeaderKind::ContentLength
    } else if is_hop_by_hop(name) {
        HeaderKind::HopByHop
    } else if name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f)
        || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        HeaderKind::Invalid
    } else {
        HeaderKind::Plain
    }
}

/// What is left of a regular file from its current position; None for anything else
/// (a pipe, a device), which is then sent chunked.
fn file_remaining(file: &File) -> Option<u64> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut file = file;
    let pos = file.stream_position().ok()?;
    Some(meta.len().saturating_sub(pos))
}

/// The status line's reason phrase: the app's own as it gave it (gunicorn sends the
/// app's status line), in latin-1 as PEP 3333 has it, else the standard one. One with a
/// control character or a character past U+00FF could not be sent as given: the
/// standard one goes instead.
fn push_reason(out: &mut Vec<u8>, status: u16, app_reason: Option<&str>) {
    let sendable = |r: &str| {
        !r.is_empty()
            && r.chars()
                .all(|c| c == '\t' || (' '..='\u{ff}').contains(&c) && c != '\u{7f}')
    };
    match app_reason {
        Some(text) if sendable(text) => out.extend(text.chars().map(|c| c as u8)),
        Some(text) => {
            crate::log_warning!(
                "app sent an invalid status reason {text:?}: sent the standard one"
            );
            out.extend_from_slice(reason(status).as_bytes());
        }
        None => out.extend_from_slice(reason(status).as_bytes()),
    }
}

/// Append a bytes body, never more than a declared Content-Length.
fn push_limited(out: &mut Vec<u8>, bytes: &[u8], framing: Framing) {
    match framing {
        Framing::Length(n) => {
            let take = bytes.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&bytes[..take]);
        }
        Framing::Chunked => push_chunk(out, bytes),
        _ => out.extend_from_slice(bytes),
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl BodySource {
    /// A bytes body sent from its own buffer, never more than a declared Content-Length.
    fn bytes(mut data: Cow<'static, [u8]>, framing: Framing) -> BodySource {
        if let Framing::Length(n) = framing {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if data.len() > n {
                match &mut data {
                    Cow::Borrowed(bytes) => *bytes = &bytes[..n],
                    Cow::Owned(bytes) => bytes.truncate(n),
                }
            }
        }
        BodySource::Bytes { data, sent: 0 }
    }

    /// Pull the next piece of body. `Ok(None)` is the end; `Err(WouldBlock)` means an app
    /// thread has not produced the next chunk yet (the loop is told when it has).
    pub fn next_chunk(&mut self, scratch: &mut [u8]) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            BodySource::Iter(stream) => stream.next().transpose(),
            BodySource::Bytes { data, sent } => {
                let n = (data.len() - *sent).min(scratch.len());
                if n == 0 {
                    return Ok(None);
                }
                let chunk = data[*sent..*sent + n].to_vec();
                *sent += n;
                Ok(Some(chunk))
            }
            BodySource::File { file, remaining } => {
                let want = match remaining {
                    Some(0) => return Ok(None),
                    Some(n) => scratch.len().min(usize::try_from(*n).unwrap_or(usize::MAX)),
                    None => scratch.len(),
                };
                let got = file.read(&mut scratch[..want])?;
                if got == 0 {
                    return match remaining {
                        Some(n) if *n > 0 => Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "file shorter than its declared length",
                        )),
                        _ => Ok(None),
                    };
                }
                if let Some(n) = remaining {
                    *n -= got as u64;
                }
                Ok(Some(scratch[..got].to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_line(response: Response) -> String {
        let environ = Environ::default();
        let ex = Exchange {
            environ: &environ,
            ctx: ResponseContext {
                version: Version::Http11,
                is_head: false,
                keep_alive: true,
            },
            server: "t",
            started: Instant::now(),
            access: None,
        };
        let mut out = Vec::new();
        write_response(response, &ex, &mut out);
        let end = out.windows(2).position(|w| w == b"\r\n").expect("a line");
        out[..end].iter().map(|&b| char::from(b)).collect()
    }

    #[test]
    fn the_apps_reason_goes_out_as_given_else_the_standard_one() {
        let ok = || Response::new(299, Vec::new(), Body::Empty);
        assert_eq!(status_line(ok()), "HTTP/1.1 299 Unknown");
        for (reason, line) in [
            ("Whatever", "HTTP/1.1 299 Whatever"),
            ("Caf\u{e9}", "HTTP/1.1 299 Caf\u{e9}"),
            // One that would split the head, or is not latin-1, or is empty: the standard one.
            ("Bad\r\nX: y", "HTTP/1.1 299 Unknown"),
            ("\u{2603}", "HTTP/1.1 299 Unknown"),
            ("", "HTTP/1.1 299 Unknown"),
        ] {
            assert_eq!(status_line(ok().with_reason(reason)), line, "{reason:?}");
        }
    }
}

//! Strict parsing of one request head (request line and header fields): httparse
//! tokenises it, borrowing everything from the buffer, and what httparse leaves to its
//! caller is checked on its output, plus the framing checks where request smuggling lives.
//!
//! Owns: [`parse_request_head`] and the [`RequestHead`] it returns. The target is decoded
//! by [`crate::target`], the body that follows is read with [`crate::body`]; what request
//! heads, response heads and trailers add to httparse alike is in `lines`.
//!
//! The worker and the TLS front both call this, so they agree on framing byte for byte.
//! Where RFC 9110/9112 leave room, gunicorn 22/23 decides; where gunicorn is lenient in a
//! way that could desync a proxy and us, we are stricter (see the notes on each check).
//!
//! Decisions worth knowing:
//! - Every line ends in CRLF; a bare LF or bare CR anywhere in the head is a 400.
//! - Empty lines (CRLF only) before the request line are skipped, as RFC 9112 2.2
//!   recommends (clients used to send a CRLF after a POST body); they count toward
//!   `head_len` and toward the head size bound. gunicorn refuses them; being tolerant is
//!   safe because the front and the worker share this code.
//! - The request line is judged as soon as its CRLF arrives: an HTTP/0.9 line (`GET /`)
//!   is a 400 at once, not after the header timeout.
//! - A well-formed `HTTP/x.y` other than 1.0/1.1 is 505; gunicorn answers 400.
//! - CONNECT is 405, as nginx answers it: neither the front nor the workers tunnel.
//! - Any transfer coding other than `chunked` (including `identity` and `gzip, chunked`)
//!   is 501, a coding after `chunked` (or `chunked` twice) is 400. gunicorn accepts
//!   `identity` and `gzip, chunked`; we do not decode them, so refusing is the honest answer.
//!   Transfer-Encoding of any kind on HTTP/1.0 is 400.
//! - Content-Length is plain digits below 2^63 (a file offset, nginx's bound too).
//! - Header names keep their case; headers with `_` in the name are kept here, dropping
//!   them (gunicorn's `header_map = drop`) is the environ builder's job.
//! - Errors are positional: the first byte that is wrong, or past a limit, decides,
//!   whether httparse or our checks find it. So a head that arrives a byte at a time earns
//!   the same answer as the whole head. Limits and line ends are judged as the bytes
//!   arrive (no unbounded buffering), the request line when its line ends, the fields'
//!   meaning (Host, Content-Length, Transfer-Encoding...) once the head is complete.
//! - The lines of a complete head are where httparse's slices say: the head is not
//!   scanned again. An incomplete head (a slow client) has its LFs found with memchr, and
//!   one that httparse refuses has the refused byte found by parsing its prefixes, once
//!   per refused connection: httparse says what is wrong, not where.

use std::mem::MaybeUninit;

use crate::body::Framing;
use crate::fields::{
    ascii_str, is_target_byte, is_tchar, is_token, list_contains, list_elements, Fields,
};
use crate::lines;
use crate::target::{authority_valid, Target};
use crate::{Limits, ParseError, Version};

/// The largest body length accepted: a file offset (off_t), as nginx bounds it.
pub const MAX_BODY_LEN: u64 = i64::MAX as u64;

/// A parsed request head, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'b> {
    /// The request line as received, without its CRLF.
    pub line: &'b str,
    pub method: &'b str,
    pub target: Target<'b>,
    pub version: Version,
    pub fields: Fields<'b>,
    /// How the body is delimited: `NoBody`, `Length` or `Chunked` (never `UntilClose`:
    /// a request without Content-Length or Transfer-Encoding has no body).
    pub body: Framing,
    /// Whether the connection may stay open after this request (version + Connection).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent on HTTP/1.1.
    pub expect_continue: bool,
    /// Bytes of the buffer the head took, including the blank line.
    pub head_len: usize,
}

impl<'b> RequestHead<'b> {
    /// Value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.get(name)
    }

    /// The authority the request is for: an absolute-form target's, which wins over Host
    /// (RFC 9112 3.2.2), else the Host field's when it is not empty. Validated, so ASCII.
    pub fn authority(&self) -> Option<&'b str> {
        self.target.authority().or_else(|| {
            self.header("host")
                .filter(|h| !h.is_empty())
                .and_then(|h| std::str::from_utf8(h).ok())
        })
    }

    /// The Content-Length the body is framed by, if any.
    pub fn content_length(&self) -> Option<u64> {
        match self.body {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Header slots on the stack: the default limit_request_fields (100) and the one more
/// that tells a head with too many fields from one at the limit. A larger limit puts
/// them on the heap.
const STACK_SLOTS: usize = 128;

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete and nothing seen so far is wrong; read more and call
/// again with the grown buffer (the whole head is rescanned: it is small and bounded).
/// `Ok(Some(head))`: `head.head_len` bytes are the head; the body (per `head.body`) and
/// any pipelined request follow. `Err(e)`: answer `e.status()` and close.
pub fn parse_request_head<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Option<RequestHead<'b>>, ParseError> {
    let limits = limits.normalized();
    // One slot past the limit: a field too many is then judged where it lies, after
    // whatever is wrong before it, rather than as httparse's error.
    let slots = limits.fields + 1;
    if slots <= STACK_SLOTS {
        let mut headers = [MaybeUninit::uninit(); STACK_SLOTS];
        parse(buf, &limits, &mut headers[..slots])
    } else {
        let mut headers = Vec::with_capacity(slots);
        parse(buf, &limits, &mut headers.spare_capacity_mut()[..slots])
    }
}

/// httparse tokenises; what it leaves to the caller is checked on its output, in the
/// order the bytes arrive, so that the first byte that is wrong decides whether the head
/// came whole or a byte at a time: line rules (limits, CRLF) and the request line's rules
/// as each line ends, the fields' meaning once the head is complete.
fn parse<'b>(
    buf: &'b [u8],
    limits: &Limits,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<RequestHead<'b>>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut *slots);
    let parts = RequestLine {
        method: req.method,
        path: req.path,
        version: req.version.map(Version::from_minor),
    };
    let max_head = limits.max_head_len();
    let head = Head {
        buf,
        limits,
        max_head,
        // A field line's content must end by the head bound, less the CRLFs of its line
        // and of the empty line after it.
        field_cap: max_head.saturating_sub(4),
    };
    match parsed {
        Ok(httparse::Status::Complete(len)) => head.complete(len, &parts, req.headers).map(Some),
        Ok(httparse::Status::Partial) => head.partial(buf.len(), &parts).map(|()| None),
        Err(e) => {
            // httparse says what is wrong but not where. What is wrong before that byte
            // (a limit, a bare LF, the request line) was wrong first.
            let at = lines::refused_at(buf.len(), |n| {
                let mut req = httparse::Request::new(&mut []);
                req.parse_with_uninit_headers(&buf[..n], &mut *slots)
                    .is_err()
            });
            head.partial(at, &parts)?;
            head.refused(e, at, &parts).map(|()| None)
        }
    }
}

/// The request line as far as httparse got with it.
struct RequestLine<'b> {
    method: Option<&'b str>,
    path: Option<&'b str>,
    version: Option<Version>,
}

/// One buffer's head, judged with its limits.
struct Head<'b, 'l> {
    buf: &'b [u8],
    limits: &'l Limits,
    max_head: usize,
    field_cap: usize,
}

impl<'b> Head<'b, '_> {
    /// A head httparse parsed whole, `len` bytes: each of its lines ends where the next
    /// starts, as httparse's slices say.
    fn complete(
        &self,
        len: usize,
        parts: &RequestLine<'b>,
        headers: &[httparse::Header<'b>],
    ) -> Result<RequestHead<'b>, ParseError> {
        let buf = self.buf;
        // The empty line that ends the head: CRLF, or the bare LF httparse takes.
        let end_line = if buf[len - 2] == b'\r' {
            len - 2
        } else {
            len - 1
        };
        let (Some(start), Some(method)) = (self.request_line_start(len)?, parts.method) else {
            return Err(ParseError::InvalidRequestLine);
        };
        let starts = headers
            .iter()
            .map(|f| lines::offset(buf, f.name.as_bytes()));
        let lfs = starts.chain([end_line]).map(|next| next - 1);
        let Some((version, target)) = self.lines(start, end_line, lfs, parts)? else {
            return Err(ParseError::InvalidRequestLine);
        };
        self.line(end_line, Some(len - 1), len, len, ParseError::HeadTooLarge)?;

        let mut fields = Fields::new(buf);
        let mut checks = FieldChecks::default();
        for field in headers {
            let (name, value) = (field.name.as_bytes(), field.value);
            checks.field(name, value, version)?;
            let (name_at, value_at) = (lines::offset(buf, name), lines::offset(buf, value));
            fields.push(
                name_at..name_at + name.len(),
                value_at..value_at + value.len(),
            );
        }
        let framing = checks.finish(version)?;
        Ok(RequestHead {
            // `method SP target SP HTTP/1.x`: ASCII, checked byte by byte.
            line: ascii_str(&buf[start..start + method.len() + target.raw().len() + 10]),
            method,
            target,
            version,
            fields,
            body: framing.body,
            keep_alive: framing.keep_alive,
            expect_continue: framing.expect_continue,
            head_len: len,
        })
    }

    /// The first `end` bytes, which httparse accepted without seeing the head end: their
    /// lines are found by their LFs.
    fn partial(&self, end: usize, parts: &RequestLine<'b>) -> Result<(), ParseError> {
        let Some(start) = self.request_line_start(end)? else {
            return Ok(());
        };
        let lfs = memchr::memchr_iter(b'\n', &self.buf[start..end]).map(|i| start + i);
        self.lines(start, end, lfs, parts).map(drop)
    }

    /// The lines from `start` (the request line's) to `end` in order, given where their
    /// LFs are (`lfs`, ascending; the last line runs to `end` while its LF has not
    /// arrived): the request line (within limit_request_line, then the rules httparse
    /// does not know), the field lines (within limit_request_field_size and the head
    /// bound, and not one too many). Gives the request line's version and target once it
    /// is complete.
    fn lines(
        &self,
        start: usize,
        end: usize,
        mut lfs: impl Iterator<Item = usize>,
        parts: &RequestLine<'b>,
    ) -> Result<Option<(Version, Target<'b>)>, ParseError> {
        let mut lf = lfs.next();
        let cap = start + self.limits.request_line;
        self.line(start, lf, end, cap, ParseError::RequestLineTooLong)?;
        let request_line = match (lf, parts.method, parts.path, parts.version) {
            (None, ..) => None,
            (_, Some(method), Some(path), Some(version)) => {
                Some((version, check_request_line(method, path)?))
            }
            // httparse has passed the line's LF, so it has all three parts.
            _ => return Err(ParseError::InvalidRequestLine),
        };
        let mut fields = 0;
        while let Some(prev) = lf {
            let start = prev + 1;
            lf = lfs.next();
            // Whichever comes first: limit_request_field_size, the head bound.
            let (cap, too_long) = match self.limits.field_content_max() {
                Some(max) if start + max <= self.field_cap => {
                    (start + max, ParseError::HeaderFieldTooLong)
                }
                _ => (self.field_cap.max(start), ParseError::HeadTooLarge),
            };
            self.line(start, lf, end, cap, too_long)?;
            if lf.is_some() && fields == self.limits.fields {
                return Err(ParseError::TooManyHeaders);
            }
            fields += 1;
        }
        Ok(request_line)
    }

    /// Where the request line starts: past the empty lines before it, which RFC 9112 2.2
    /// says to skip (clients used to send a CRLF after a POST body) and which count
    /// toward the head bound. `None` while only empty lines have arrived.
    fn request_line_start(&self, end: usize) -> Result<Option<usize>, ParseError> {
        let buf = &self.buf[..end];
        let mut pos = 0;
        while buf[pos..].starts_with(b"\r\n") {
            pos += 2;
            if pos > self.max_head {
                return Err(ParseError::HeadTooLarge);
            }
        }
        match buf.get(pos) {
            // httparse takes a bare LF for an empty line too.
            Some(b'\n') => Err(ParseError::BareLineFeed),
            None | Some(b'\r') => Ok(None),
            Some(_) => Ok(Some(pos)),
        }
    }

    /// A line from `start` whose LF is at `lf` (`None`: the bytes end at `end` before
    /// it): its content, CRLF excluded, must end by `cap` (else `too_long`, as soon as a
    /// byte past it arrives), and it must end in CRLF, not the bare LF httparse takes.
    #[inline]
    fn line(
        &self,
        start: usize,
        lf: Option<usize>,
        end: usize,
        cap: usize,
        too_long: ParseError,
    ) -> Result<(), ParseError> {
        let stop = lf.unwrap_or(end);
        let content_end = lines::content_end(self.buf, start, stop);
        if content_end > cap {
            return Err(too_long);
        }
        if lf.is_some() && content_end == stop {
            return Err(ParseError::BareLineFeed);
        }
        Ok(())
    }

    /// The verdict on a head whose byte `at` httparse refused with `e`, nothing before it
    /// being wrong.
    fn refused(
        &self,
        e: httparse::Error,
        at: usize,
        parts: &RequestLine<'b>,
    ) -> Result<(), ParseError> {
        let described = lines::describe(e, self.buf, at);
        if e == httparse::Error::Version {
            return self.unknown_version(parts);
        }
        if described != ParseError::InvalidRequestLine {
            return Err(described);
        }
        // httparse's Token: a byte the method or the target may not hold.
        let b = self.buf.get(at).copied();
        Err(match (parts.method, b) {
            (None, Some(b' ' | b'\r')) => ParseError::InvalidRequestLine,
            (None, _) => ParseError::InvalidMethod,
            // `GET /`: HTTP/0.9 has no version and no headers; gunicorn answers 400 too,
            // and so do we as soon as the line ends.
            (Some(_), Some(b'\r')) => ParseError::MissingVersion,
            // Includes the SP after a target that is not UTF-8, where httparse refuses it.
            (Some(_), _) => ParseError::InvalidTarget,
        })
    }

    /// httparse knows HTTP/1.0 and HTTP/1.1 only. Another well-formed `HTTP/x.y` that
    /// ends the line is 505 (gunicorn answers 400), anything else 400; which, the bytes
    /// after the one httparse refused say. `Ok` while they have not arrived.
    fn unknown_version(&self, parts: &RequestLine<'b>) -> Result<(), ParseError> {
        let (Some(method), Some(path)) = (parts.method, parts.path) else {
            return Err(ParseError::InvalidVersion);
        };
        let cap = lines::offset(self.buf, method.as_bytes()) + self.limits.request_line;
        let version = lines::offset(self.buf, path.as_bytes()) + path.len() + 1;
        for (i, &want) in b"HTTP/0.0\r\n".iter().enumerate() {
            let at = version + i;
            let Some(&b) = self.buf.get(at) else {
                return Ok(());
            };
            if at >= cap && i < 8 && !matches!(b, b'\r' | b'\n') {
                return Err(ParseError::RequestLineTooLong);
            }
            let fits = if want == b'0' {
                b.is_ascii_digit()
            } else {
                b == want
            };
            if !fits {
                return Err(lines::describe(httparse::Error::Version, self.buf, at));
            }
        }
        Err(ParseError::UnsupportedVersion)
    }
}

/// The request line's rules that httparse leaves to us: gunicorn's method, no tunnels,
/// a target of the form the method allows.
fn check_request_line<'b>(method: &str, target: &'b str) -> Result<Target<'b>, ParseError> {
    // gunicorn's default: tchars, no lowercase and no '#', 3 to 20 characters.
    let method_ok = (3..=20).contains(&method.len())
        && method
            .bytes()
            .all(|b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#');
    if !method_ok {
        return Err(ParseError::InvalidMethod);
    }
    if method == "CONNECT" {
        // Tunnels are not served (nginx answers 405 too); only the target's bytes matter.
        return Err(if target.bytes().all(is_target_byte) {
            ParseError::ConnectNotSupported
        } else {
            ParseError::InvalidTarget
        });
    }
    Target::parse(method, target.as_bytes())
}

/// What the fields decide about the message.
struct Decided {
    body: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// The semantic checks of the fields that frame a request, made as each field is
/// scanned.
#[derive(Default)]
struct FieldChecks {
    hosts: usize,
    content_length: Option<u64>,
    te_seen: bool,
    chunked: bool,
    close: bool,
    keep_alive_token: bool,
    expect_continue: bool,
}

impl FieldChecks {
    fn field(&mut self, name: &[u8], value: &[u8], version: Version) -> Result<(), ParseError> {
        // The length tells most names apart before any case-insensitive compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.hosts += 1;
                if self.hosts > 1 {
                    return Err(ParseError::DuplicateHost);
                }
                if !authority_valid(value, false, false) {
                    return Err(ParseError::InvalidHost);
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Even an identical repeat is refused: a peer that joins them as "5, 5"
                // or takes the last one could frame differently (gunicorn refuses it too).
                if self.content_length.is_some() {
                    return Err(ParseError::DuplicateContentLength);
                }
                self.content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // RFC 9112 6.1: a 1.0 message with Transfer-Encoding has unreliable
                // framing, whatever the coding; say so before judging the codings.
                if version == Version::Http10 {
                    return Err(ParseError::TransferEncodingOnHttp10);
                }
                self.te_seen = true;
                for coding in list_elements(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        if self.chunked {
                            return Err(ParseError::ChunkedRepeated);
                        }
                        self.chunked = true;
                    } else if self.chunked {
                        // RFC 9112 6.3: chunked must be the final coding of a request.
                        return Err(ParseError::ChunkedNotLast);
                    } else if is_token(coding) {
                        return Err(ParseError::UnsupportedTransferCoding);
                    } else {
                        return Err(ParseError::InvalidTransferEncoding);
                    }
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                self.close |= list_contains(value, "close");
                self.keep_alive_token |= list_contains(value, "keep-alive");
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self, version: Version) -> Result<Decided, ParseError> {
        // Also for an absolute-form target: RFC 9112 3.2 requires Host on 1.1 whatever
        // the form (its value is then ignored for the target's authority).
        if version == Version::Http11 && self.hosts == 0 {
            return Err(ParseError::MissingHost);
        }
        let body = if self.te_seen {
            if !self.chunked {
                return Err(ParseError::InvalidTransferEncoding);
            }
            // RFC 9112 6.3 lets TE override CL, but a peer that picked CL would desync.
            if self.content_length.is_some() {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            Framing::Chunked
        } else {
            match self.content_length {
                Some(n) => Framing::Length(n),
                None => Framing::NoBody,
            }
        };
        let keep_alive = match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive_token && !self.close,
        };
        Ok(Decided {
            body,
            keep_alive,
            expect_continue: self.expect_continue && version == Version::Http11,
        })
    }
}

/// `1*DIGIT` and nothing else: no sign, no spaces inside, no list, nothing at or past
/// 2^63.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .filter(|&n| n <= MAX_BODY_LEN)
            .ok_or(ParseError::InvalidContentLength)?;
    }
    Ok(n)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

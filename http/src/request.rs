//! Strict parsing of one request head (request line and header fields) in one pass over
//! the bytes, borrowing everything from the buffer, plus the framing checks where request
//! smuggling lives.
//!
//! Owns: [`parse_request_head`] and the [`RequestHead`] it returns. Field lines are
//! scanned by [`crate::fields`], the target is decoded by [`crate::target`], the body that
//! follows is read with [`crate::body`].
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
//! - Errors are positional: the first byte that is wrong, or past a limit, decides. So a
//!   head that arrives a byte at a time earns the same answer as the whole head.

use crate::body::Framing;
use crate::fields::{
    ascii_str, is_target_byte, is_tchar, is_token, list_contains, list_elements, scan_field_line,
    scan_start_line, FieldLine, Fields,
};
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
    let max_head = limits.max_head_len();
    let mut pos = 0;
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
        if pos > max_head {
            return Err(ParseError::HeadTooLarge);
        }
    }
    let line_start = pos;
    let Some(line_len) = scan_start_line(
        buf,
        line_start,
        limits.request_line,
        ParseError::RequestLineTooLong,
    )?
    else {
        return Ok(None);
    };
    let line = &buf[line_start..line_start + line_len];
    let (method, target, version) = parse_request_line(line)?;
    pos = line_start + line_len + 2;

    let mut fields = Fields::new(buf);
    let mut checks = FieldChecks::default();
    let field_max = limits.field_content_max();
    loop {
        // A line's content must end by the head bound (minus the blank line's CRLF) and
        // by limit_request_field_size, whichever comes first.
        let head_cap = max_head.saturating_sub(4);
        let (cap, too_long) = match field_max {
            Some(max) if pos + max <= head_cap => (pos + max, ParseError::HeaderFieldTooLong),
            _ => (head_cap.max(pos), ParseError::HeadTooLarge),
        };
        match scan_field_line(buf, pos, cap, too_long)? {
            FieldLine::Incomplete => return Ok(None),
            FieldLine::End(next) => {
                pos = next;
                break;
            }
            FieldLine::Field { name, value, next } => {
                if fields.len() == limits.fields {
                    return Err(ParseError::TooManyHeaders);
                }
                checks.field(&buf[name.clone()], &buf[value.clone()], version)?;
                fields.push(name, value);
                pos = next;
            }
        }
    }
    let framing = checks.finish(version)?;
    Ok(Some(RequestHead {
        // Method, target and version are ASCII, checked byte by byte.
        line: ascii_str(line),
        method,
        target,
        version,
        fields,
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        head_len: pos,
    }))
}

fn parse_request_line(line: &[u8]) -> Result<(&str, Target<'_>, Version), ParseError> {
    // Exactly one SP between the three parts: method SP target SP version. Splitting at
    // the first and last SP leaves any stray SP inside the target, where it is refused.
    let (Some(first), Some(last)) = (
        line.iter().position(|&b| b == b' '),
        line.iter().rposition(|&b| b == b' '),
    ) else {
        return Err(ParseError::InvalidRequestLine);
    };
    if first == last {
        // `GET /`: HTTP/0.9 has no version and no headers; gunicorn answers 400 too.
        return Err(if first > 0 && first + 1 < line.len() {
            ParseError::MissingVersion
        } else {
            ParseError::InvalidRequestLine
        });
    }
    if first == 0 || last == first + 1 {
        return Err(ParseError::InvalidRequestLine);
    }
    let method = &line[..first];
    let version = Version::parse(&line[last + 1..])?;

    // gunicorn's default: tchars, no lowercase and no '#', 3 to 20 characters.
    let method_ok = (3..=20).contains(&method.len())
        && method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#');
    if !method_ok {
        return Err(ParseError::InvalidMethod);
    }
    let method = ascii_str(method);
    let raw_target = &line[first + 1..last];
    if method == "CONNECT" {
        // Tunnels are not served (nginx answers 405 too); only the target's bytes matter.
        return Err(if raw_target.iter().all(|&b| is_target_byte(b)) {
            ParseError::ConnectNotSupported
        } else {
            ParseError::InvalidTarget
        });
    }
    let target = Target::parse(method, raw_target)?;
    Ok((method, target, version))
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

//! Parsing a response head from an upstream (the front reading what the workers answer)
//! with httparse, plus what it leaves to us: CRLF line ends, a status from 100 to 599,
//! the bounds, and the framing of the body that follows by RFC 9112 6.3. The body itself
//! is read with [`crate::body::BodyDecoder::response`], the same chunked decoder requests
//! use.
//!
//! Strict on what could desync the front from its client (CRLF only, no controls, no
//! conflicting lengths) and lenient where RFC 9112 lets a recipient be (a list of equal
//! Content-Lengths, a missing reason phrase). Any error means the front answers 502, so
//! unlike a request's, which error comes first does not matter.

use std::mem::MaybeUninit;

use crate::body::Framing;
use crate::fields::{list_contains, list_elements, Fields};
use crate::lines;
use crate::request::parse_content_length;
use crate::{ParseError, Version};

/// Largest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most fields a response head may have.
pub const MAX_RESPONSE_FIELDS: usize = 128;

/// A parsed response head, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'b> {
    pub version: Version,
    pub status: u16,
    /// The reason phrase as sent (possibly empty; may hold obs-text).
    pub reason: &'b [u8],
    pub fields: Fields<'b>,
    /// How the body is delimited (`NoBody` for 1xx, 204, 304 and answers to HEAD).
    pub framing: Framing,
    /// The length the sender announced, also where there is no body (HEAD, 304) so a
    /// proxy can re-state it; `None` when Transfer-Encoding overrides it.
    pub content_length: Option<u64>,
    /// The sender keeps the connection open after this response: HTTP/1.1 without
    /// `Connection: close` (1.0 with `keep-alive`), and a body that does not end at close.
    pub keep_alive: bool,
    /// Bytes of the buffer the head took, including the blank line.
    pub head_len: usize,
}

/// Parses the response head at the start of `buf`, the answer to a request that was
/// (`request_was_head`) or was not a HEAD. `Ok(None)` while incomplete. A 1xx head is
/// returned as it is (an interim response: another head follows); what to do with a 101
/// is the caller's decision.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
) -> Result<Option<ResponseHead<'_>>, ParseError> {
    let mut slots = [MaybeUninit::uninit(); MAX_RESPONSE_FIELDS];
    let config = httparse::ParserConfig::default();
    let mut response = httparse::Response::new(&mut []);
    let len = match config.parse_response_with_uninit_headers(&mut response, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_RESPONSE_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
        Ok(_) => return Err(ParseError::HeadTooLarge),
        Err(e) => {
            // Any refusal is a 502; which byte, and why, is for the log.
            let at = lines::refused_at(buf.len(), |n| {
                let mut response = httparse::Response::new(&mut []);
                config
                    .parse_response_with_uninit_headers(&mut response, &buf[..n], &mut slots)
                    .is_err()
            });
            return Err(match e {
                httparse::Error::Version => Version::parse(&buf[..buf.len().min(8)])
                    .err()
                    .unwrap_or(ParseError::InvalidVersion),
                _ => lines::describe(e, buf, at),
            });
        }
    };
    let (Some(minor), Some(status)) = (response.version, response.code) else {
        return Err(ParseError::InvalidStatusLine);
    };
    // httparse skips empty lines before the status line; an upstream has no reason to
    // send them.
    if !buf.starts_with(b"HTTP/") || !(100..=599).contains(&status) {
        return Err(ParseError::InvalidStatusLine);
    }
    // Every line ends in CRLF: the status line where the first field (or the empty line)
    // starts, each field line where the next starts.
    let end_line = if buf[len - 2] == b'\r' {
        len - 2
    } else {
        len - 1
    };
    let line_ends = response
        .headers
        .iter()
        .map(|f| lines::offset(buf, f.name.as_bytes()))
        .chain([end_line, len]);
    let mut start = 0;
    for next in line_ends {
        if lines::content_end(buf, start, next - 1) == next - 1 {
            return Err(ParseError::BareLineFeed);
        }
        start = next;
    }
    // `HTTP/1.x SP 3DIGIT [SP reason]`: httparse has checked the reason's bytes (and
    // gives an empty one for obs-text, so take it from the buffer).
    let status_end = memchr::memchr(b'\r', buf).unwrap_or(0);
    let reason = buf.get(13..status_end).unwrap_or_default();
    let version = Version::from_minor(minor);
    let mut fields = Fields::new(buf);
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for field in response.headers.iter() {
        let (name, value) = (field.name, field.value);
        let name_at = lines::offset(buf, name.as_bytes());
        let value_at = lines::offset(buf, value);
        fields.push(
            name_at..name_at + name.len(),
            value_at..value_at + value.len(),
        );
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 6.3: a list of equal values may be taken as one.
            for part in list_elements(value) {
                let n = parse_content_length(part)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(ParseError::DuplicateContentLength);
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only a final `chunked` delimits the body; anything else runs until
            // close (RFC 9112 6.3).
            chunked = list_elements(value)
                .filter(|c| !c.is_empty())
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            close |= list_contains(value, "close");
            keep_alive_token |= list_contains(value, "keep-alive");
        }
    }
    let mut keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    let no_body =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::NoBody
    } else if transfer_encoding {
        // Transfer-Encoding overrides Content-Length; a message with both must not be
        // followed by another on that connection (it may be a smuggling attempt).
        if content_length.is_some() {
            keep_alive = false;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    if transfer_encoding {
        content_length = None;
    }
    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        fields,
        framing,
        content_length,
        keep_alive,
        head_len: len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(buf: &[u8], head_request: bool) -> ResponseHead<'_> {
        match parse_response_head(buf, head_request) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn framing_by_rfc_9112_6_3() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!(
            (h.status, h.framing, h.keep_alive, h.head_len),
            (200, Framing::Length(5), true, 38)
        );
        assert_eq!(h.reason, b"OK");
        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        let h = head(b"HTTP/1.0 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
        let h = head(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.content_length), (Framing::NoBody, Some(9)));
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(h.framing, Framing::NoBody);
        let h = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(
            (h.framing, h.keep_alive, h.content_length),
            (Framing::Chunked, false, None)
        );
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Length(3));
        let h = head(b"HTTP/1.1 100 Continue\r\n\r\n", false);
        assert_eq!(
            (h.status, h.framing, h.reason),
            (100, Framing::NoBody, &b"Continue"[..])
        );
        let h = head(b"HTTP/1.1 204\r\n\r\n", false);
        assert_eq!((h.status, h.reason), (204, &b""[..]));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nCont", false),
            Ok(None)
        );
        let bad: &[(&[u8], ParseError)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ParseError::DuplicateContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ParseError::InvalidContentLength,
            ),
            (b"HTTP/1.1 20 OK\r\n\r\n", ParseError::InvalidStatusLine),
            (b"HTTP/1.1 600 X\r\n\r\n", ParseError::InvalidStatusLine),
            (b"HTTP/1.1 200OK\r\n\r\n", ParseError::InvalidStatusLine),
            (b"HTTP/2.0 200 OK\r\n\r\n", ParseError::UnsupportedVersion),
            (b"HTTP/1.1 200 OK\nX: y\r\n\r\n", ParseError::BareLineFeed),
            (
                b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
                ParseError::WhitespaceBeforeColon,
            ),
            (
                b"HTTP/1.1 200 O\x01K\r\n\r\n",
                ParseError::InvalidStatusLine,
            ),
        ];
        for (raw, want) in bad {
            assert_eq!(
                parse_response_head(raw, false).err(),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_RESPONSE_HEAD + 10, b'a');
        assert_eq!(
            parse_response_head(&big, false),
            Err(ParseError::HeadTooLarge)
        );
    }
}

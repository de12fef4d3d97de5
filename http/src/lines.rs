//! What request heads ([`crate::request`]), response heads ([`crate::response`]) and
//! chunked trailers ([`crate::chunked`]) add to httparse, which tokenises all three: where
//! a line httparse accepted really ends (it takes a bare LF for CRLF), where in the
//! buffer a slice it returned lies, and which byte it refused and why (its errors say
//! neither where nor, precisely, what).

use crate::ParseError;

/// Where `part`, a slice httparse returned from `buf`, starts in `buf`.
pub(crate) fn offset(buf: &[u8], part: &[u8]) -> usize {
    let at = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(at <= buf.len(), "a slice from outside the buffer");
    at
}

/// Where the content of the line from `start` ends, CR excluded, given where its bytes
/// stop: at its LF, or where the bytes that arrived end (a CR last may begin a CRLF).
/// A complete line whose content ends at its LF ended in a bare LF, which httparse takes
/// for CRLF; it lets no CR stand anywhere but before an LF.
pub(crate) fn content_end(buf: &[u8], start: usize, stop: usize) -> usize {
    if stop > start && buf[stop - 1] == b'\r' {
        stop - 1
    } else {
        stop
    }
}

/// The index of the byte httparse refuses in a buffer of `len` bytes that it refuses:
/// the last byte of the shortest prefix `refuses` says it refuses. httparse reads left to
/// right and says no at the first byte it cannot take, so the search is sound; it runs
/// only when a head is refused, once per connection.
pub(crate) fn refused_at(len: usize, mut refuses: impl FnMut(usize) -> bool) -> usize {
    // An empty prefix is never refused, the whole buffer is.
    let (mut accepted, mut refused) = (0, len);
    while refused - accepted > 1 {
        let mid = accepted + (refused - accepted) / 2;
        if refuses(mid) {
            refused = mid;
        } else {
            accepted = mid;
        }
    }
    refused.saturating_sub(1)
}

/// What is wrong with `buf[at]`, the byte httparse refused with `e`, nothing before it
/// being wrong. Request-line errors ([`httparse::Error::Token`], and versions other than
/// 1.0 and 1.1) are refined by [`crate::request`], which knows the line's parts.
pub(crate) fn describe(e: httparse::Error, buf: &[u8], at: usize) -> ParseError {
    use httparse::Error as E;
    let byte = |i: usize| buf.get(i).copied();
    let b = byte(at);
    let line_start = at == 0 || byte(at - 1) == Some(b'\n');
    match (e, b) {
        // At the LF of the field line that found no slot.
        (E::TooManyHeaders, _) => ParseError::TooManyHeaders,
        (_, Some(0)) => ParseError::NulInHead,
        // httparse refuses the byte after a CR that is not an LF, or a CR inside a token.
        _ if !line_start && byte(at - 1) == Some(b'\r') => ParseError::BareCarriageReturn,
        (_, Some(b'\r')) if byte(at + 1).is_some_and(|n| n != b'\n') => {
            ParseError::BareCarriageReturn
        }
        // An LF where the line cannot end yet (inside a token).
        (_, Some(b'\n')) => ParseError::BareLineFeed,
        // A line that starts with whitespace continues the previous field (obs-fold):
        // RFC 9112 5.2 allows rejecting it, and gunicorn 22+ does by default.
        (E::HeaderName, Some(b' ' | b'\t')) if line_start => ParseError::ObsoleteLineFolding,
        (E::HeaderName, Some(b':')) if line_start => ParseError::EmptyHeaderName,
        // `Transfer-Encoding : chunked` is the classic desync: some peers trim, some not.
        (E::HeaderName, Some(b' ' | b'\t')) => {
            let rest = &buf[at..];
            let line = &rest[..memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len())];
            if line.contains(&b':') {
                ParseError::WhitespaceBeforeColon
            } else {
                ParseError::InvalidHeaderName
            }
        }
        (E::HeaderName, Some(b'\r')) => ParseError::HeaderWithoutColon,
        (E::HeaderName, _) => ParseError::InvalidHeaderName,
        (E::HeaderValue, _) => ParseError::InvalidHeaderValue,
        (E::Status, _) => ParseError::InvalidStatusLine,
        (E::Version | E::NewLine, _) => ParseError::InvalidVersion,
        (E::Token, _) => ParseError::InvalidRequestLine,
    }
}

/// A field line alone (a chunked trailer, which arrives line by line), CRLF included,
/// as httparse reads it.
pub(crate) fn parse_field_line(line: &[u8]) -> Result<crate::Header, ParseError> {
    // httparse reads a block of fields closed by an empty line: give it one.
    let mut block = Vec::with_capacity(line.len() + 2);
    block.extend_from_slice(line);
    block.extend_from_slice(b"\r\n");
    let mut slot = [httparse::EMPTY_HEADER; 1];
    let parsed = httparse::parse_headers(&block, &mut slot);
    match parsed {
        Ok(httparse::Status::Complete((_, [field]))) => Ok(crate::Header {
            name: field.name.to_owned(),
            value: field.value.to_vec(),
        }),
        Ok(_) => Err(ParseError::HeaderWithoutColon),
        Err(e) => {
            let at = refused_at(block.len(), |n| {
                httparse::parse_headers(&block[..n], &mut [httparse::EMPTY_HEADER; 1]).is_err()
            });
            Err(describe(e, &block, at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(line: &[u8]) -> Result<crate::Header, ParseError> {
        parse_field_line(line)
    }

    #[test]
    fn field_line_rules() {
        let h = field(b"Host: a \r\n").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_slice()), ("Host", &b"a"[..]));
        assert_eq!(field(b"X:\r\n").unwrap().value, b"");
        assert!(field(b"X: caf\xc3\xa9\tok\r\n").is_ok());
        let bad: &[(&[u8], ParseError)] = &[
            (b" X: a\r\n", ParseError::ObsoleteLineFolding),
            (b"X a\r\n", ParseError::InvalidHeaderName),
            (b"Xa\r\n", ParseError::HeaderWithoutColon),
            (b": a\r\n", ParseError::EmptyHeaderName),
            (b"X : a\r\n", ParseError::WhitespaceBeforeColon),
            (b"X Y: a\r\n", ParseError::WhitespaceBeforeColon),
            (b"X: a\x01b\r\n", ParseError::InvalidHeaderValue),
            (b"X: a\x7f\r\n", ParseError::InvalidHeaderValue),
            (b"X: a\0\r\n", ParseError::NulInHead),
            (b"X\0: a\r\n", ParseError::NulInHead),
            (b"X: a\rb\r\n", ParseError::BareCarriageReturn),
            (b"X\rb: a\r\n", ParseError::BareCarriageReturn),
            (b"X\n", ParseError::BareLineFeed),
        ];
        for (line, want) in bad {
            assert_eq!(field(line).err(), Some(*want), "{:?}", line.escape_ascii());
        }
    }

    #[test]
    fn refused_at_finds_the_first_bad_byte() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n";
        let refuses = |n: usize| {
            let mut headers = [httparse::EMPTY_HEADER; 4];
            httparse::Request::new(&mut headers)
                .parse(&buf[..n])
                .is_err()
        };
        assert_eq!(buf[refused_at(buf.len(), refuses)], 0x01);
        assert_eq!(refused_at(1, |_| true), 0);
    }

    #[test]
    fn line_ends() {
        assert_eq!(content_end(b"ab\r\n", 0, 3), 2);
        assert_eq!(content_end(b"ab\n", 0, 2), 2);
        assert_eq!(content_end(b"\r\n", 1, 1), 1);
        assert_eq!(content_end(b"ab\r", 0, 3), 2);
        let buf = b"abc";
        assert_eq!(offset(buf, &buf[1..]), 1);
    }
}

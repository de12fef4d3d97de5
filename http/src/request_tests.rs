//! Unit tests of [`super`] (the request head parser), kept beside it so parse.rs stays
//! readable. The data-driven fixtures in workers/tests/fixtures/requests cover the
//! smuggling catalogue; these cover incremental behaviour and the helpers.

use super::*;
use crate::TargetForm;

fn parse(buf: &[u8]) -> Result<Option<RequestHead<'_>>, ParseError> {
    parse_request_head(buf, &Limits::default())
}

fn ok(buf: &[u8]) -> RequestHead<'_> {
    match parse(buf) {
        Ok(Some(h)) => h,
        other => panic!(
            "expected a head for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn err(buf: &[u8]) -> ParseError {
    match parse(buf) {
        Err(e) => e,
        other => panic!(
            "expected an error for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

#[test]
fn simple_get() {
    let buf = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Y:  z \r\n\r\n";
    let h = ok(buf);
    assert_eq!(h.method, "GET");
    assert_eq!(h.target.raw(), "/a/b?c=d");
    assert_eq!(h.line, "GET /a/b?c=d HTTP/1.1");
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.body, Framing::NoBody);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.head_len, buf.len());
    assert_eq!(h.header("x-y"), Some(&b"z"[..]));
    assert_eq!(h.header("missing"), None);
    assert_eq!((h.target.path(), h.target.query()), ("/a/b", "c=d"));
    assert_eq!(h.authority(), Some("example.com"));
}

#[test]
fn every_prefix_is_incomplete_not_an_error() {
    let buf = b"\r\nPOST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    let full = ok(buf);
    for cut in 0..full.head_len {
        assert_eq!(parse(&buf[..cut]), Ok(None), "prefix of {cut} bytes");
    }
    assert_eq!(full.body, Framing::Length(3));
    assert_eq!(&buf[full.head_len..], b"abc");
}

#[test]
fn leading_empty_lines_are_skipped_but_counted() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(ok(buf).head_len, buf.len());
    assert_eq!(
        err(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::BareLineFeed
    );
}

#[test]
fn pipelined_requests_split_at_head_len() {
    let buf = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let first = ok(buf);
    let second = ok(&buf[first.head_len..]);
    assert_eq!(second.target.raw(), "/2");
    assert_eq!(first.head_len + second.head_len, buf.len());
}

#[test]
fn keep_alive_rules() {
    assert!(!ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n").keep_alive);
}

#[test]
fn expect_continue_only_on_1_1() {
    assert!(
        ok(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(
        !ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue
    );
}

#[test]
fn request_line_limit_applies_before_crlf() {
    let limits = Limits {
        request_line: 20,
        fields: 10,
        field_size: 50,
    };
    let long = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        parse_request_head(long, &limits),
        Err(ParseError::RequestLineTooLong)
    );
    // Exactly at the limit is fine.
    let exact = b"GET /aaaaaaa HTTP/1.0\r\n\r\n";
    assert_eq!(exact.len() - 4, 21);
    assert_eq!(
        parse_request_head(exact, &limits),
        Err(ParseError::RequestLineTooLong)
    );
    let exact = b"GET /aaaaaa HTTP/1.0\r\n\r\n";
    assert!(matches!(parse_request_head(exact, &limits), Ok(Some(_))));
}

#[test]
fn field_size_counts_the_crlf_as_gunicorn_does() {
    let limits = Limits {
        request_line: 100,
        fields: 2,
        field_size: 10,
    };
    // "Host: hhh" is 9 bytes, 11 with its CRLF: too long; "Host: hh" + CRLF is 10.
    assert_eq!(
        parse_request_head(b"GET / HTTP/1.1\r\nHost: hhh\r\n\r\n", &limits),
        Err(ParseError::HeaderFieldTooLong)
    );
    assert!(matches!(
        parse_request_head(b"GET / HTTP/1.1\r\nHost: hh\r\n\r\n", &limits),
        Ok(Some(_))
    ));
    // Refused before the line ends, so a slow client cannot grow the buffer.
    assert_eq!(
        parse_request_head(b"GET / HTTP/1.1\r\nHost: hhhhhhhhhhhh", &limits),
        Err(ParseError::HeaderFieldTooLong)
    );
    assert_eq!(
        parse_request_head(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n", &limits),
        Err(ParseError::TooManyHeaders)
    );
    assert!(matches!(
        parse_request_head(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n", &limits),
        Ok(Some(_))
    ));
}

#[test]
fn endless_empty_lines_are_bounded() {
    let limits = Limits {
        request_line: 10,
        fields: 1,
        field_size: 10,
    };
    let buf = b"\r\n".repeat(100);
    assert_eq!(
        parse_request_head(&buf, &limits),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn zero_limits_mean_gunicorn_maxima() {
    let l = Limits {
        request_line: 0,
        fields: 0,
        field_size: 0,
    }
    .normalized();
    assert_eq!(
        l,
        Limits {
            request_line: 8190,
            fields: 32768,
            field_size: 0
        }
    );
    // No limit per field: a field far past 8190 bytes is fine, within the head bound.
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    buf.extend(std::iter::repeat_n(b'x', 20_000));
    buf.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(parse_request_head(&buf, &l), Ok(Some(_))));
}

#[test]
fn field_size_above_8190_is_honoured_not_clamped() {
    let limits = Limits {
        field_size: 16384,
        ..Limits::default()
    };
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    buf.extend(std::iter::repeat_n(b'x', 16384 - 5));
    buf.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(parse_request_head(&buf, &limits), Ok(Some(_))));
    buf.insert(30, b'x');
    assert_eq!(
        parse_request_head(&buf, &limits),
        Err(ParseError::HeaderFieldTooLong)
    );
}

#[test]
fn many_fields_use_the_heap_path() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..60 {
        buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    let h = ok(&buf);
    assert_eq!(h.fields.len(), 61);
    assert_eq!(h.header("x-59"), Some(&b"59"[..]));
}

#[test]
fn early_errors_on_partial_heads() {
    assert_eq!(err(b"GET /\0"), ParseError::NulInHead);
    assert_eq!(err(b"GET / HTTP/1.1\rX"), ParseError::BareCarriageReturn);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: h\n"),
        ParseError::BareLineFeed
    );
}

#[test]
fn error_statuses() {
    assert_eq!(ParseError::RequestLineTooLong.status(), 414);
    assert_eq!(ParseError::TooManyHeaders.status(), 431);
    assert_eq!(ParseError::HeaderFieldTooLong.status(), 431);
    assert_eq!(ParseError::HeadTooLarge.status(), 431);
    assert_eq!(ParseError::UnsupportedVersion.status(), 505);
    assert_eq!(ParseError::UnsupportedTransferCoding.status(), 501);
    assert_eq!(ParseError::InvalidChunkSize.status(), 400);
    assert_eq!(ParseError::DuplicateContentLength.status(), 400);
    assert_eq!(ParseError::ConnectNotSupported.status(), 405);
    assert_eq!(ParseError::BodyTooLarge.status(), 413);
}

#[test]
fn target_forms() {
    let h = ok(b"GET http://example.com:8080/x/y?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_eq!(h.target.form(), TargetForm::Absolute);
    assert_eq!((h.target.path(), h.target.query()), ("/x/y", "q=1"));
    // RFC 9112 3.2.2: the target's authority, not Host, names the server.
    assert_eq!(h.authority(), Some("example.com:8080"));
    let h = ok(b"GET http://h?next=/home HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((h.target.path(), h.target.query()), ("/", "next=/home"));
    let h = ok(b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((h.target.path(), h.target.query()), ("/", ""));
    let h = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(h.target.form(), TargetForm::Asterisk);
    assert_eq!(
        err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::AsteriskTargetWithoutOptions
    );
    assert_eq!(
        err(b"GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::AuthorityTargetWithoutConnect
    );
    assert_eq!(
        err(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidTarget
    );
    assert_eq!(
        err(b"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidTarget
    );
    // A stray % in the query is passed through (QUERY_STRING is raw).
    assert_eq!(
        ok(b"GET /?off=50% HTTP/1.1\r\nHost: h\r\n\r\n")
            .target
            .query(),
        "off=50%"
    );
}

#[test]
fn connect_is_refused_like_nginx() {
    for raw in [
        &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"[..],
        b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
        // Decided on the request line: no need to wait for the headers.
        b"CONNECT example.com:443 HTTP/1.1\r\n",
    ] {
        assert_eq!(err(raw), ParseError::ConnectNotSupported);
    }
    assert_eq!(
        err(b"CONNECT a\x7fb HTTP/1.1\r\n"),
        ParseError::InvalidTarget
    );
}

#[test]
fn http09_request_line_is_refused_at_once() {
    assert_eq!(err(b"GET /\r\n"), ParseError::MissingVersion);
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost"), Ok(None));
}

#[test]
fn version_statuses() {
    assert_eq!(
        err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        ParseError::UnsupportedVersion
    );
    assert_eq!(
        err(b"GET / HTTP/0.9\r\n\r\n"),
        ParseError::UnsupportedVersion
    );
    assert_eq!(
        err(b"GET / http/1.1\r\nHost: h\r\n\r\n"),
        ParseError::InvalidVersion
    );
    assert_eq!(
        err(b"GET / HTTP/1.10\r\nHost: h\r\n\r\n"),
        ParseError::InvalidVersion
    );
    assert_eq!(err(b"GET /\r\n\r\n"), ParseError::MissingVersion);
    assert_eq!(err(b"GET\r\n\r\n"), ParseError::InvalidRequestLine);
}

#[test]
fn transfer_encoding_lists() {
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
    assert_eq!(h.body, Framing::Chunked);
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ParseError::ChunkedRepeated
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ParseError::ChunkedNotLast
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        ParseError::UnsupportedTransferCoding
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n"),
        ParseError::ChunkedNotLast
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"),
        ParseError::InvalidTransferEncoding
    );
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"),
        ParseError::InvalidTransferEncoding
    );
}

#[test]
fn content_length_overflow() {
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"),
        ParseError::InvalidContentLength
    );
    // Past a file offset (2^63-1), as nginx refuses it.
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n"),
        ParseError::InvalidContentLength
    );
    let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n");
    assert_eq!(h.content_length(), Some(i64::MAX as u64));
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n").body,
        Framing::Length(7)
    );
}

/// The answer to `buf`, checked to be the answer to every prefix of it that is not
/// incomplete: what a client gets does not depend on how its bytes were split.
fn answer_at_every_prefix(buf: &[u8], limits: &Limits) -> Option<u16> {
    let whole = parse_request_head(buf, limits).err().map(|e| e.status());
    for cut in 0..buf.len() {
        match parse_request_head(&buf[..cut], limits) {
            Ok(None) => {}
            Err(e) => assert_eq!(Some(e.status()), whole, "{cut}-byte prefix: {e:?}"),
            Ok(Some(_)) => panic!(
                "{cut}-byte prefix of {:?} is a whole head",
                buf.escape_ascii().to_string()
            ),
        }
    }
    whole
}

#[test]
fn the_first_wrong_byte_decides_whoever_finds_it() {
    let limits = Limits {
        request_line: 100,
        fields: 10,
        field_size: 200,
    };
    let long = "a".repeat(300);
    let cases: Vec<(String, Option<u16>)> = vec![
        // A field's meaning is judged once the head is complete; limits as bytes arrive.
        (
            format!("GET / HTTP/1.1\r\nContent-Length: x\r\nX: {long}"),
            Some(431),
        ),
        (
            format!("GET / HTTP/1.1\r\nContent-Length: x\r\nX: {long}\r\n\r\n"),
            Some(431),
        ),
        (
            "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n".to_owned(),
            Some(400),
        ),
        // httparse's refusal, before a line past its limit...
        (
            format!("GET / HTTP/1.1\r\nX: a\x01b\r\nY: {long}\r\n\r\n"),
            Some(400),
        ),
        // ...or after it.
        (
            format!("GET / HTTP/1.1\r\nY: {long}\x01\r\n\r\n"),
            Some(431),
        ),
        (format!("GET / HTTP/1.1\r\nY : {long}\r\n\r\n"), Some(400)),
        // A bare LF httparse took, before a line past its limit.
        (format!("GET / HTTP/1.1\nHost: {long}"), Some(400)),
        (format!("GET / HTTP/1.1\r\nHost: h\nX: {long}"), Some(400)),
        (format!("GET /{long} HTTP/2.0\r\n\r\n"), Some(414)),
        (format!("GET /{long}\x01 HTTP/1.1\r\n\r\n"), Some(414)),
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n".to_owned(), Some(505)),
        ("GET / HTTP/2.0\nHost: h\r\n\r\n".to_owned(), Some(400)),
        ("GET / HTTP/2.0\rHost: h\r\n\r\n".to_owned(), Some(400)),
        ("GET / HTTP/2.01\r\n".to_owned(), Some(400)),
        ("GET /\x01 HTTP/2.0\r\n".to_owned(), Some(400)),
        ("get / HTTP/2.0\r\n".to_owned(), Some(505)),
        // The request line is judged when it ends, before the fields arrive.
        (format!("CONNECT h:1 HTTP/1.1\r\nX: {long}"), Some(405)),
    ];
    for (raw, want) in cases {
        let got = answer_at_every_prefix(raw.as_bytes(), &limits);
        assert_eq!(got, want, "{:?}", raw.escape_debug().to_string().get(..60));
    }
}

#[test]
fn an_unknown_version_waits_for_its_line_end() {
    for partial in [
        &b"GET / HTTP/3"[..],
        b"GET / HTTP/2.",
        b"GET / HTTP/2.0",
        b"GET / HTTP/2.0\r",
    ] {
        assert_eq!(parse(partial), Ok(None), "{:?}", partial.escape_ascii());
    }
    assert_eq!(err(b"GET / HTTP/2.0\r\n"), ParseError::UnsupportedVersion);
    assert_eq!(err(b"GET / HTTP/2.0\n"), ParseError::BareLineFeed);
    assert_eq!(err(b"GET / HTTP/2.0\rX"), ParseError::BareCarriageReturn);
    let limits = Limits {
        request_line: 12,
        ..Limits::default()
    };
    // The version's bytes count toward limit_request_line like any other.
    assert_eq!(
        parse_request_head(b"GET / HTTP/2.0\r\n", &limits),
        Err(ParseError::RequestLineTooLong)
    );
}

#[test]
fn a_large_field_limit_puts_the_slots_on_the_heap() {
    let limits = Limits {
        fields: 1000,
        ..Limits::default()
    };
    let head = |n: usize| {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 1..n {
            buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf
    };
    let buf = head(1000);
    let parsed = parse_request_head(&buf, &limits);
    assert_eq!(parsed.map(|h| h.map(|h| h.fields.len())), Ok(Some(1000)));
    for n in [1001, 1002, 1500] {
        assert_eq!(
            parse_request_head(&head(n), &limits),
            Err(ParseError::TooManyHeaders),
            "{n} fields"
        );
    }
}
